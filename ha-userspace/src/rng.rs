//! A small deterministic generator (xorshift64), for what needs spread, not secrecy: the
//! configuration parsers' mutation tests (reproducible from a seed) and the order DHAAD lists
//! home agents of equal preference in.

/// xorshift64 (Marsaglia). Its state must not be zero.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}
