//! Test support: a small deterministic text mutator for the configuration parsers'
//! robustness tests (`no_input_panics` in `umip` and `setkey`). Operators' files are
//! hand-written and often half-edited; whatever they contain, parsing must end in a
//! value or a located error, never a panic.

pub use crate::rng::XorShift;

/// Applies one to six random edits to `seed`: deletions, insertions from `alphabet`
/// (the characters the grammar cares about), truncation, swaps, duplicated and removed
/// runs, and arbitrary Unicode scalars.
pub fn mutate(seed: &str, alphabet: &[char], rng: &mut XorShift) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for _ in 0..1 + rng.below(6) {
        let len = chars.len();
        match rng.below(7) {
            0 if len > 0 => {
                chars.remove(rng.below(len));
            }
            1 => {
                let c = alphabet[rng.below(alphabet.len())];
                chars.insert(rng.below(len + 1), c);
            }
            2 if len > 0 => chars.truncate(rng.below(len)),
            3 if len > 1 => chars.swap(rng.below(len), rng.below(len)),
            4 if len > 0 => {
                let start = rng.below(len);
                let n = rng.below(40).min(len - start);
                let piece: Vec<char> = chars[start..start + n].to_vec();
                let at = rng.below(len + 1);
                chars.splice(at..at, piece);
            }
            5 if len > 0 => {
                let start = rng.below(len);
                let n = rng.below(20).min(len - start);
                chars.drain(start..start + n);
            }
            _ => {
                let c = char::from_u32((rng.next_u64() % 0x11_0000) as u32).unwrap_or('\u{fffd}');
                chars.insert(rng.below(len + 1), c);
            }
        }
    }
    chars.into_iter().collect()
}
