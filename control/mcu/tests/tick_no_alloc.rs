//! Proves the audio mixer allocates nothing per sample once warm: a counting global
//! allocator wraps the system one, and after a warm-up (every jitter-buffer slot used
//! once) 100 ticks of 4 inputs and 4 minus-one outputs allocate exactly one payload
//! buffer per output per tick (the `Vec<u8>` the API hands out) and nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cascade_mcu::audio::{AudioMixer, FRAME, FRAME_SAMPLES};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn one_allocation_per_output_per_tick_once_warm() {
    const INPUTS: u64 = 4;
    const WARM: usize = 100;
    const MEASURED: usize = 100;
    // Every packet is encoded up front, so that only the mixer runs while counting.
    let packets: Vec<Vec<Vec<u8>>> = (0..INPUTS)
        .map(|i| {
            let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
                .expect("encoder");
            let freq = 300.0 + 150.0 * i as f64;
            (0..WARM + MEASURED)
                .map(|k| {
                    let pcm: Vec<i16> = (0..FRAME_SAMPLES)
                        .map(|s| {
                            let t = (k * FRAME_SAMPLES + s) as f64 / 48_000.0;
                            (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
                        })
                        .collect();
                    enc.encode_vec(&pcm, 4000).expect("encode")
                })
                .collect()
        })
        .collect();
    let mut mixer = AudioMixer::new(32_000).expect("mixer");
    for i in 0..INPUTS {
        mixer.add_input(i);
        mixer.output(&[i]).expect("output");
    }
    let mut out = Vec::with_capacity(INPUTS as usize);
    let mut latencies = Vec::with_capacity(64);
    let t0 = Instant::now();
    let mut run = |ticks: std::ops::Range<usize>, out: &mut Vec<(u64, Vec<u8>)>| {
        for k in ticks {
            let now = t0 + FRAME * k as u32;
            for i in 0..INPUTS {
                let seq = 40_000u16.wrapping_add(k as u16);
                let payload = &packets[i as usize][k];
                mixer.push_rtp(now, i, seq, 960 * k as u32, payload);
            }
            mixer.tick(now + Duration::from_millis(5), out);
            out.clear(); // drops the payloads: deallocations are not counted
            latencies.clear();
            mixer.drain_latencies(&mut latencies);
        }
    };
    run(0..WARM, &mut out);
    let before = ALLOCS.load(Ordering::Relaxed);
    run(WARM..WARM + MEASURED, &mut out);
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(
        allocs,
        INPUTS * MEASURED as u64,
        "allocations in {MEASURED} ticks"
    );
    assert!(mixer.stats().frames_decoded >= INPUTS * (WARM + MEASURED - 3) as u64);
}
