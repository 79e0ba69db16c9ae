//! Checks that SRTP/SRTCP protect and unprotect allocate nothing once an SSRC is known.
//! Rust allocations are counted by a wrapping global allocator, OpenSSL's own by hooks
//! installed with `CRYPTO_set_mem_functions`. Counters are per thread, so tests running
//! in parallel do not see each other's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::Once;

use cascade_dataplane::srtp::{SrtpContext, SrtpKeyingMaterial, SrtpProfile};

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static RUST_ALLOCS: Cell<u64> = const { Cell::new(0) };
    static OPENSSL_ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// Adds one to `counter` if this thread is measuring. Touches only const-initialised
/// thread-locals without destructors, so it never allocates itself.
fn count(counter: &'static std::thread::LocalKey<Cell<u64>>) {
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        let _ = counter.try_with(|c| c.set(c.get() + 1));
    }
}

struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to `System`; counting does not allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(&RUST_ALLOCS);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(&RUST_ALLOCS);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(&RUST_ALLOCS);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

unsafe extern "C" {
    // libcrypto is linked through the `openssl` dependency.
    fn CRYPTO_set_mem_functions(
        malloc: unsafe extern "C" fn(usize, *const c_char, c_int) -> *mut c_void,
        realloc: unsafe extern "C" fn(*mut c_void, usize, *const c_char, c_int) -> *mut c_void,
        free: unsafe extern "C" fn(*mut c_void, *const c_char, c_int),
    ) -> c_int;
}

unsafe extern "C" fn ossl_malloc(n: usize, _file: *const c_char, _line: c_int) -> *mut c_void {
    count(&OPENSSL_ALLOCS);
    // SAFETY: plain libc allocation, as OpenSSL's default.
    unsafe { libc::malloc(n) }
}

unsafe extern "C" fn ossl_realloc(
    p: *mut c_void,
    n: usize,
    _file: *const c_char,
    _line: c_int,
) -> *mut c_void {
    count(&OPENSSL_ALLOCS);
    // SAFETY: `p` came from `ossl_malloc`/`ossl_realloc`, i.e. from libc.
    unsafe { libc::realloc(p, n) }
}

unsafe extern "C" fn ossl_free(p: *mut c_void, _file: *const c_char, _line: c_int) {
    // SAFETY: `p` came from `ossl_malloc`/`ossl_realloc`, i.e. from libc.
    unsafe { libc::free(p) }
}

/// Installs the OpenSSL hooks; must run before OpenSSL's first allocation in this
/// process, which is why every test calls it first.
fn install_openssl_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the hooks have the signatures OpenSSL 1.1/3.x expect and forward to
        // libc, so memory stays compatible with OpenSSL's own free.
        let ok = unsafe { CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) };
        assert_eq!(
            ok, 1,
            "OpenSSL allocated before the hooks could be installed"
        );
    });
}

fn rtp(ssrc: u32, seq: u16, payload: usize, out: &mut [u8]) -> usize {
    // One-byte header extension with an audio level element, then the payload.
    let header = [
        0x90, 111, 0, 0, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0xBE, 0xDE, 0, 1, 0x10, 0x7f, 0, 0,
    ];
    out[..header.len()].copy_from_slice(&header);
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
    for (i, b) in out[header.len()..header.len() + payload]
        .iter_mut()
        .enumerate()
    {
        *b = i as u8;
    }
    header.len() + payload
}

fn rtcp(ssrc: u32, out: &mut [u8]) -> usize {
    // Receiver report with one block.
    out[..4].copy_from_slice(&[0x81, 201, 0, 7]);
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    for (i, b) in out[8..32].iter_mut().enumerate() {
        *b = i as u8;
    }
    32
}

fn measure(profile: SrtpProfile) -> (u64, u64) {
    install_openssl_hooks();
    let key = [7u8; 16];
    let salt = [9u8; 14];
    let m = SrtpKeyingMaterial::new(profile, &key, &salt[..profile.salt_len()]).unwrap();
    let mut tx = SrtpContext::new(&m).unwrap();
    let mut rx = SrtpContext::new(&m).unwrap();
    let ssrcs = [0x1111_1111u32, 0x2222_2222, 0x3333_3333];
    let mut buf = [0u8; 1500];
    let mut plain = [0u8; 1500];
    let mut seq: u16 = 65000;

    let mut round = |seq: u16, i: usize, buf: &mut [u8; 1500], plain: &mut [u8; 1500]| {
        let ssrc = ssrcs[i % ssrcs.len()];
        let len = rtp(ssrc, seq, (i * 37) % 1200, plain);
        buf[..len].copy_from_slice(&plain[..len]);
        let n = tx.protect_rtp(buf, len).unwrap();
        let n = rx.unprotect_rtp(&mut buf[..n]).unwrap();
        assert!(buf[..n] == plain[..len]);
        if i.is_multiple_of(10) {
            let len = rtcp(ssrc, plain);
            buf[..len].copy_from_slice(&plain[..len]);
            let n = tx.protect_rtcp(buf, len).unwrap();
            let n = rx.unprotect_rtcp(&mut buf[..n]).unwrap();
            assert!(buf[..n] == plain[..len]);
        }
    };

    // Warm-up: the first packet of each SSRC adds its state entry.
    for i in 0..ssrcs.len() * 10 {
        round(seq, i, &mut buf, &mut plain);
        seq = seq.wrapping_add(1);
    }

    RUST_ALLOCS.set(0);
    OPENSSL_ALLOCS.set(0);
    MEASURING.set(true);
    for i in 0..10_000 {
        round(seq, i, &mut buf, &mut plain);
        seq = seq.wrapping_add(1);
    }
    MEASURING.set(false);
    (RUST_ALLOCS.get(), OPENSSL_ALLOCS.get())
}

#[test]
fn aes_cm_hmac_sha1_allocates_nothing_per_packet() {
    assert_eq!(measure(SrtpProfile::Aes128CmHmacSha1_80), (0, 0));
}

#[test]
fn aead_aes_gcm_allocates_nothing_per_packet() {
    assert_eq!(measure(SrtpProfile::AeadAes128Gcm), (0, 0));
}

#[test]
fn the_counters_do_count() {
    install_openssl_hooks();
    MEASURING.set(true);
    let v = std::hint::black_box(vec![1u8; 64]);
    let ctx = openssl::cipher_ctx::CipherCtx::new();
    MEASURING.set(false);
    drop((v, ctx));
    assert_eq!(RUST_ALLOCS.get(), 1);
    assert!(OPENSSL_ALLOCS.get() > 0);
}
