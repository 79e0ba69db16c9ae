//! Mixing arithmetic: sums of 16-bit frames in 32-bit integers, the subtraction that
//! makes a minus-one output, and the limiter that brings a sum back to 16 bits without
//! wrap-around (a smoothed gain towards a threshold, then a soft knee that never
//! reaches full scale). Pure functions over slices; no allocation.

/// Gain 1.0 in Q16.
const UNITY: i64 = 1 << 16;
/// Peak level the gain aims for (0.9 of full scale).
const THRESHOLD: i64 = 29_491;
/// Above this level, samples bend smoothly towards full scale (0.75 of full scale).
const KNEE: i64 = 24_576;
const FULL: i64 = i16::MAX as i64;

/// Adds `frame` into `sum`.
pub(crate) fn add(sum: &mut [i32], frame: &[i16]) {
    for (s, &x) in sum.iter_mut().zip(frame) {
        *s += i32::from(x);
    }
}

/// Subtracts `frame` from `sum`.
pub(crate) fn subtract(sum: &mut [i32], frame: &[i16]) {
    for (s, &x) in sum.iter_mut().zip(frame) {
        *s -= i32::from(x);
    }
}

/// Brings a 32-bit mix back to 16 bits: one per output, since its gain carries over
/// from frame to frame.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    /// Current gain, Q16.
    gain: i64,
}

impl Limiter {
    pub(crate) fn new() -> Self {
        Self { gain: UNITY }
    }

    /// Writes `mix` to `out` scaled by a gain that drops at once (ramped over the frame)
    /// when the frame's peak would exceed the threshold and recovers over about half a
    /// second, then through the soft knee: `out` keeps every sample's sign and never
    /// reaches `i16::MIN` or `i16::MAX`.
    pub(crate) fn process(&mut self, mix: &[i32], out: &mut [i16]) {
        let peak = mix
            .iter()
            .map(|s| i64::from(s.unsigned_abs()))
            .max()
            .unwrap_or(0);
        let wanted = if peak > THRESHOLD {
            THRESHOLD * UNITY / peak
        } else {
            UNITY
        };
        let target = if wanted < self.gain {
            wanted
        } else {
            // Release: an eighth of the way back towards unity per 20 ms frame.
            (self.gain + (UNITY - self.gain) / 8 + 1).min(wanted)
        };
        if self.gain == UNITY && target == UNITY {
            for (o, &x) in out.iter_mut().zip(mix) {
                *o = soft_clip(i64::from(x));
            }
            return;
        }
        let n = mix.len().max(1) as i64;
        for (i, (o, &x)) in out.iter_mut().zip(mix).enumerate() {
            let g = self.gain + (target - self.gain) * (i as i64 + 1) / n;
            *o = soft_clip(i64::from(x) * g / UNITY);
        }
        self.gain = target;
    }
}

/// Identity up to the knee, then `knee + r·d/(r+d)` (d: excess over the knee, r: room
/// left to full scale): continuous with slope 1 at the knee, monotonic, below full
/// scale for any input.
fn soft_clip(x: i64) -> i16 {
    let m = x.abs();
    if m <= KNEE {
        return x as i16; // |x| <= KNEE < i16::MAX
    }
    let room = FULL - KNEE;
    let d = m - KNEE;
    let y = KNEE + room * d / (room + d);
    (x.signum() * y) as i16 // y < FULL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_full_scale_inputs_neither_wrap_nor_flip_sign() {
        let n = 960;
        let mut limiter = Limiter::new();
        let mut out = vec![0i16; n];
        let mut sum = vec![0i32; n];
        for frame in 0..50 {
            sum.iter_mut().for_each(|s| *s = 0);
            for (k, f) in [440.0f64, 660.0, 880.0].into_iter().enumerate() {
                let input: Vec<i16> = (0..n)
                    .map(|i| {
                        let t = (frame * n + i) as f64 / 48_000.0;
                        let v = (2.0 * std::f64::consts::PI * f * t + k as f64).sin();
                        // Full-scale square-ish sine: saturates at both ends.
                        (v * 40_000.0).clamp(-32_768.0, 32_767.0) as i16
                    })
                    .collect();
                add(&mut sum, &input);
            }
            limiter.process(&sum, &mut out);
            for (i, (&s, &o)) in sum.iter().zip(&out).enumerate() {
                assert!(
                    s.signum() * i32::from(o).signum() >= 0,
                    "frame {frame} sample {i}: {s} -> {o}"
                );
                assert!(o > i16::MIN && o < i16::MAX, "{o}");
                assert!(i32::from(o).abs() <= s.abs(), "never louder than the sum");
            }
        }
        assert!(out.iter().map(|&o| i32::from(o).abs()).max().unwrap_or(0) > THRESHOLD as i32 / 2);
    }

    #[test]
    fn quiet_mixes_pass_unchanged_and_the_gain_recovers() {
        let mut limiter = Limiter::new();
        let quiet: Vec<i32> = (0..960).map(|i| (i % 200) * 100 - 10_000).collect();
        let mut out = vec![0i16; 960];
        limiter.process(&quiet, &mut out);
        assert!(quiet.iter().zip(&out).all(|(&s, &o)| s == i32::from(o)));
        limiter.process(&vec![200_000; 960], &mut out);
        assert!(limiter.gain < UNITY / 4);
        for _ in 0..100 {
            limiter.process(&quiet, &mut out);
        }
        assert_eq!(limiter.gain, UNITY);
        assert!(quiet.iter().zip(&out).all(|(&s, &o)| s == i32::from(o)));
    }

    #[test]
    fn soft_clip_is_monotonic_and_bounded() {
        let mut last = i16::MIN;
        for x in (-3_000_000i64..3_000_000).step_by(97) {
            let y = soft_clip(x);
            assert!(y >= last && y > i16::MIN && y < i16::MAX);
            last = y;
        }
        assert_eq!(soft_clip(1000), 1000);
        assert_eq!(soft_clip(-KNEE), -KNEE as i16);
    }

    #[test]
    fn subtract_undoes_add() {
        let a: Vec<i16> = (0..960)
            .map(|i| (i * 37 % 65_536 - 32_768) as i16)
            .collect();
        let mut sum = vec![5i32; 960];
        add(&mut sum, &a);
        add(&mut sum, &a);
        subtract(&mut sum, &a);
        assert!(sum.iter().zip(&a).all(|(&s, &x)| s == 5 + i32::from(x)));
    }
}
