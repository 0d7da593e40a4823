//! A block of 1..=6 channels and the Web Audio up/down-mixing rules.
//!
//! web-audio-api 1.1.0 shares channel buffers by reference counting and distinguishes "the
//! silence buffer" from a buffer of zeros. Two of its decisions depend on that identity, not on
//! the samples, and change the sound: `add` sums two inputs as mono when every channel of both is
//! the same buffer (an up-mixed mono signal, or silence), and nodes skip work on silent inputs.
//! So a `Bus` keeps the same facts as flags: which channels are silent, and whether all channels
//! hold one shared signal.

use super::{Channel, MAX_CHANNELS, RENDER_QUANTUM};

const SILENT: Channel = [0.0; RENDER_QUANTUM];

/// How a node input computes its channel count (Web Audio `channelCountMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelCountMode {
    Max,
    ClampedMax,
    Explicit,
}

/// Web Audio `channelInterpretation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelInterpretation {
    Speakers,
    Discrete,
}

/// A node input's channel configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelConfig {
    pub count: usize,
    pub mode: ChannelCountMode,
    pub interpretation: ChannelInterpretation,
}

impl ChannelConfig {
    /// The Web Audio default: count 2, mode max, speakers.
    pub const DEFAULT: ChannelConfig = ChannelConfig {
        count: 2,
        mode: ChannelCountMode::Max,
        interpretation: ChannelInterpretation::Speakers,
    };
}

/// One render quantum of 1..=`MAX_CHANNELS` channels.
#[derive(Clone)]
pub struct Bus {
    channels: usize,
    data: [Channel; MAX_CHANNELS],
    /// Channel i is web-audio-api's shared silence buffer (reads as zeros).
    silent: [bool; MAX_CHANNELS],
    /// All channels are one shared buffer (web-audio-api `all_channels_identical`).
    identical: bool,
}

impl Default for Bus {
    fn default() -> Self {
        Self::silent()
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("channels", &self.channels)
            .field("silent", &&self.silent[..self.channels])
            .field("identical", &self.identical)
            .finish()
    }
}

impl Bus {
    /// One silent channel: what every node input and output starts as.
    pub fn silent() -> Self {
        Bus {
            channels: 1,
            data: [SILENT; MAX_CHANNELS],
            silent: [true; MAX_CHANNELS],
            identical: true,
        }
    }

    pub fn number_of_channels(&self) -> usize {
        self.channels
    }

    /// Every channel is the silence buffer.
    pub fn is_silent(&self) -> bool {
        self.silent[..self.channels].iter().all(|&s| s)
    }

    pub fn is_channel_silent(&self, i: usize) -> bool {
        self.silent[i]
    }

    /// Turns this bus into one silent channel (web-audio-api `make_silent`).
    pub fn make_silent(&mut self) {
        self.channels = 1;
        self.silent = [true; MAX_CHANNELS];
        self.identical = true;
    }

    /// Sets the channel count; new channels are silent. Existing channels keep their data.
    pub fn set_number_of_channels(&mut self, n: usize) {
        assert!(
            (1..=MAX_CHANNELS).contains(&n),
            "channel count {n} out of range"
        );
        for i in self.channels..n {
            self.silent[i] = true;
        }
        if n > self.channels {
            self.identical = self.identical && self.silent[0];
        }
        self.channels = n;
    }

    /// Read access; a silent channel reads as zeros.
    pub fn channel(&self, i: usize) -> &Channel {
        debug_assert!(i < self.channels);
        if self.silent[i] {
            &SILENT
        } else {
            &self.data[i]
        }
    }

    /// Write access to one channel. The channel stops being silent (its old contents are kept,
    /// zeros if it was silent) and the bus stops counting as one shared signal.
    pub fn channel_mut(&mut self, i: usize) -> &mut Channel {
        debug_assert!(i < self.channels);
        if self.silent[i] {
            self.data[i] = SILENT;
            self.silent[i] = false;
        }
        self.identical = self.channels == 1;
        &mut self.data[i]
    }

    /// Makes this bus a copy of `other` (channel count, data and flags).
    pub fn copy_from(&mut self, other: &Bus) {
        self.channels = other.channels;
        self.silent = other.silent;
        self.identical = other.identical;
        for i in 0..other.channels {
            if !other.silent[i] {
                self.data[i] = other.data[i];
            }
        }
    }

    /// Sets channel `i` to silence.
    pub fn set_channel_silent(&mut self, i: usize) {
        self.silent[i] = true;
        self.identical = self.silent[..self.channels].iter().all(|&s| s);
    }

    /// Marks every channel as holding the same signal: a mono signal up-mixed by copying, as
    /// web-audio-api's `(1, 2)` up-mix does by sharing the buffer.
    fn mark_identical_copy_of_first(&mut self) {
        for i in 1..self.channels {
            self.silent[i] = self.silent[0];
            if !self.silent[0] {
                self.data[i] = self.data[0];
            }
        }
        self.identical = true;
    }

    fn all_channels_identical(&self) -> bool {
        self.channels == 1 || self.identical || self.is_silent()
    }

    fn move_channel(&mut self, from: usize, to: usize) {
        self.silent[to] = self.silent[from];
        if !self.silent[from] {
            self.data[to] = self.data[from];
        }
    }

    /// Up- or down-mixes to `n` channels following the Web Audio mixing rules exactly as
    /// web-audio-api 1.1.0 computes them (its `mix_inner`).
    pub fn mix(&mut self, n: usize, interpretation: ChannelInterpretation) {
        let from = self.channels;
        if from == n {
            return;
        }
        assert!(
            (1..=MAX_CHANNELS).contains(&n),
            "channel count {n} out of range"
        );
        if interpretation == ChannelInterpretation::Discrete {
            self.set_number_of_channels(n);
            return;
        }
        let sqrt05 = (0.5_f32).sqrt();
        match (from, n) {
            (1, 2) => {
                self.channels = 2;
                self.mark_identical_copy_of_first();
            }
            (1, 4) => {
                self.channels = 4;
                self.move_channel(0, 1);
                self.silent[2] = true;
                self.silent[3] = true;
                self.identical = self.is_silent();
            }
            (1, 6) => {
                // Mono goes to the centre channel; everything else is silent.
                self.move_channel(0, 2);
                self.silent[0] = true;
                self.silent[1] = true;
                self.silent[3] = true;
                self.silent[4] = true;
                self.silent[5] = true;
                self.channels = 6;
                self.identical = self.is_silent();
            }
            (1, _) | (3, 4) | (3, 5) | (3, 6) | (5, 6) | (2, 4) | (2, 5) | (2, 6) => {
                self.set_number_of_channels(n);
            }
            (2, 3) => {
                // L, R -> silent, L, R
                self.move_channel(1, 2);
                self.move_channel(0, 1);
                self.silent[0] = true;
                self.channels = 3;
                self.identical = self.is_silent();
            }
            (4, 5) => {
                self.move_channel(3, 4);
                self.move_channel(2, 3);
                self.silent[2] = true;
                self.channels = 5;
                self.identical = self.is_silent();
            }
            (4, 6) => {
                self.move_channel(3, 5);
                self.move_channel(2, 4);
                self.silent[2] = true;
                self.silent[3] = true;
                self.channels = 6;
                self.identical = self.is_silent();
            }
            (2, 1) => {
                let r = *self.channel(1);
                let l = self.channel_mut(0);
                for (l, r) in l.iter_mut().zip(r.iter()) {
                    *l = 0.5 * (*l + *r);
                }
                self.channels = 1;
            }
            (3, 1) => self.channels = 1,
            (4, 1) => {
                let (r, sl, sr) = (*self.channel(1), *self.channel(2), *self.channel(3));
                let l = self.channel_mut(0);
                for i in 0..RENDER_QUANTUM {
                    l[i] = 0.25 * (l[i] + r[i] + sl[i] + sr[i]);
                }
                self.channels = 1;
            }
            (5, 1) => {
                self.move_channel(2, 0);
                self.channels = 1;
            }
            (6, 1) => {
                let (r, c, sl, sr) = (
                    *self.channel(1),
                    *self.channel(2),
                    *self.channel(4),
                    *self.channel(5),
                );
                let l = self.channel_mut(0);
                for i in 0..RENDER_QUANTUM {
                    l[i] = sqrt05.mul_add(l[i] + r[i], 0.5f32.mul_add(sl[i] + sr[i], c[i]));
                }
                self.channels = 1;
            }
            (3, 2) | (5, 2) | (4, 3) | (5, 3) | (6, 3) | (5, 4) | (6, 5) => {
                self.channels = n;
                self.identical = self.is_silent();
            }
            (4, 2) => {
                let (sl, sr) = (*self.channel(2), *self.channel(3));
                let l = self.channel_mut(0);
                for (l, sl) in l.iter_mut().zip(sl.iter()) {
                    *l = 0.5 * (*l + *sl);
                }
                let r = self.channel_mut(1);
                for (r, sr) in r.iter_mut().zip(sr.iter()) {
                    *r = 0.5 * (*r + *sr);
                }
                self.channels = 2;
            }
            (6, 2) => {
                let (c, sl, sr) = (*self.channel(2), *self.channel(4), *self.channel(5));
                let l = self.channel_mut(0);
                for i in 0..RENDER_QUANTUM {
                    l[i] += sqrt05 * (c[i] + sl[i]);
                }
                let r = self.channel_mut(1);
                for i in 0..RENDER_QUANTUM {
                    r[i] += sqrt05 * (c[i] + sr[i]);
                }
                self.channels = 2;
            }
            (6, 4) => {
                let c = *self.channel(2);
                self.move_channel(5, 3);
                self.move_channel(4, 2);
                let l = self.channel_mut(0);
                for i in 0..RENDER_QUANTUM {
                    l[i] += sqrt05 * c[i];
                }
                let r = self.channel_mut(1);
                for i in 0..RENDER_QUANTUM {
                    r[i] += sqrt05 * c[i];
                }
                self.channels = 4;
            }
            _ => unreachable!("mix {from} -> {n}"),
        }
    }

    /// Whether summing this bus alone into a silent input with `config` gives this very bus
    /// (channel count, samples and every flag that is read): a mono bus whose count `config`
    /// keeps at one. Such an input can be read in place instead of copied.
    pub fn is_input_unchanged(&self, config: &ChannelConfig) -> bool {
        self.channels == 1
            && self.identical
            && (config.mode != ChannelCountMode::Explicit || config.count == 1)
    }

    /// Makes this bus `input`'s channels mapped by `f` (input channel, this bus's channel to
    /// write whole): every channel is written and so not silent, as after copying `input`
    /// and writing each channel through [`Bus::channel_mut`], without the copy.
    pub fn map_from(&mut self, input: &Bus, mut f: impl FnMut(&Channel, &mut Channel)) {
        self.channels = input.channels;
        self.silent = [false; MAX_CHANNELS];
        self.identical = self.channels == 1;
        for c in 0..self.channels {
            f(input.channel(c), &mut self.data[c]);
        }
    }

    /// Sums `other` into this bus, both mixed first to the channel count that `config` computes
    /// (web-audio-api `AudioRenderQuantum::add`, including its mono fast path).
    pub fn add(&mut self, other: &Bus, config: &ChannelConfig) {
        let max_channels = self.channels.max(other.channels);
        let n = match config.mode {
            ChannelCountMode::Max => max_channels,
            ChannelCountMode::Explicit => config.count,
            ChannelCountMode::ClampedMax => max_channels.min(config.count),
        };
        if config.interpretation == ChannelInterpretation::Speakers
            && self.all_channels_identical()
            && other.all_channels_identical()
        {
            self.channels = 1;
            add_channel(self, 0, other, 0);
            self.mix(n, config.interpretation);
            return;
        }
        self.mix(n, config.interpretation);
        if other.channels == n {
            for i in 0..n {
                add_channel(self, i, other, i);
            }
            return;
        }
        // `other` must be re-mixed first. A cloned Bus is 3 KiB whatever its channel count;
        // the per-thread scratch takes only the channels that carry samples.
        REMIX.with_borrow_mut(|copy| {
            copy.copy_from(other);
            copy.mix(n, config.interpretation);
            for i in 0..n {
                add_channel(self, i, copy, i);
            }
        });
    }
}

thread_local! {
    /// Where [`Bus::add`] re-mixes its other input: one per thread, reused, never shared.
    static REMIX: std::cell::RefCell<Bus> = std::cell::RefCell::new(Bus::silent());
}

/// web-audio-api `AudioRenderQuantumChannel::add`: silence + x takes x itself, x + silence is x.
fn add_channel(dst: &mut Bus, i: usize, src: &Bus, j: usize) {
    if src.silent[j] {
        return;
    }
    if dst.silent[i] {
        dst.data[i] = src.data[j];
        dst.silent[i] = false;
    } else {
        for (a, b) in dst.data[i].iter_mut().zip(src.data[j].iter()) {
            *a += *b;
        }
    }
    if dst.channels > 1 {
        dst.identical = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mono(v: f32) -> Bus {
        let mut b = Bus::silent();
        b.channel_mut(0).fill(v);
        b
    }

    #[test]
    fn an_input_read_in_place_is_what_summing_it_would_give() {
        let mut stereo = mono(0.5);
        stereo.set_number_of_channels(2);
        stereo.channel_mut(1).fill(-0.25);
        // Mono again, but from a stereo bus whose channels differed: not one shared signal.
        let mut narrowed = stereo.clone();
        narrowed.set_number_of_channels(1);
        let mut up_mixed = mono(0.75);
        up_mixed.mix(2, ChannelInterpretation::Speakers);
        let buses = [Bus::silent(), mono(0.5), stereo, narrowed, up_mixed];
        let mut in_place = 0;
        for bus in &buses {
            for mode in [
                ChannelCountMode::Max,
                ChannelCountMode::ClampedMax,
                ChannelCountMode::Explicit,
            ] {
                for count in [1, 2] {
                    for interpretation in [
                        ChannelInterpretation::Speakers,
                        ChannelInterpretation::Discrete,
                    ] {
                        let config = ChannelConfig {
                            count,
                            mode,
                            interpretation,
                        };
                        if !bus.is_input_unchanged(&config) {
                            continue;
                        }
                        in_place += 1;
                        let mut summed = Bus::silent();
                        summed.add(bus, &config);
                        let n = summed.channels;
                        assert_eq!(n, bus.channels, "{bus:?} {config:?}");
                        assert_eq!(summed.silent[..n], bus.silent[..n]);
                        assert_eq!(summed.identical, bus.identical);
                        for c in 0..n {
                            assert_eq!(summed.channel(c), bus.channel(c));
                        }
                    }
                }
            }
        }
        // Silent and plain mono under every config but an explicit two.
        assert_eq!(in_place, 2 * 10);
    }

    #[test]
    fn mono_into_six_channels_goes_to_centre() {
        let mut b = mono(0.25);
        b.mix(6, ChannelInterpretation::Speakers);
        assert_eq!(b.number_of_channels(), 6);
        assert_eq!(b.channel(2)[0], 0.25);
        assert!(b.is_channel_silent(0));
        b.mix(2, ChannelInterpretation::Speakers);
        assert_eq!(b.channel(0)[5], (0.5f32).sqrt() * 0.25);
    }

    #[test]
    fn adding_two_upmixed_monos_stays_mono_then_mixes() {
        let mut a = mono(1.0);
        a.mix(2, ChannelInterpretation::Speakers);
        let b = mono(2.0);
        a.add(&b, &ChannelConfig::DEFAULT);
        assert_eq!(a.number_of_channels(), 2);
        assert_eq!(a.channel(0)[0], 3.0);
        assert_eq!(a.channel(1)[0], 3.0);
    }

    #[test]
    fn silent_six_channel_plus_mono_sums_as_mono_then_upmixes() {
        // All-silent buses count as one shared buffer, so the mono fast path applies and the
        // sum is up-mixed afterwards: the mono lands in the centre channel.
        let mut a = Bus::silent();
        a.set_number_of_channels(6);
        a.add(&mono(0.5), &ChannelConfig::DEFAULT);
        assert_eq!(a.number_of_channels(), 6);
        assert_eq!(a.channel(2)[0], 0.5);
        assert!(a.is_channel_silent(0));
    }

    #[test]
    fn six_channel_signal_plus_mono_puts_mono_in_centre() {
        let mut a = mono(0.5);
        a.mix(6, ChannelInterpretation::Speakers);
        // channel 0 carries signal, the rest silent: not identical
        let mut six = Bus::silent();
        six.set_number_of_channels(6);
        six.channel_mut(0).fill(1.0);
        six.add(&mono(0.5), &ChannelConfig::DEFAULT);
        assert_eq!(six.number_of_channels(), 6);
        assert_eq!(six.channel(0)[0], 1.0);
        assert_eq!(six.channel(2)[0], 0.5);
    }

    #[test]
    fn downmix_stereo_to_mono_averages() {
        let mut b = Bus::silent();
        b.set_number_of_channels(2);
        b.channel_mut(0).fill(1.0);
        b.channel_mut(1).fill(0.5);
        b.mix(1, ChannelInterpretation::Speakers);
        assert_eq!(b.channel(0)[7], 0.75);
    }
}
