//! Bounds-checked access to packet bytes.
//!
//! The verifier accepts a packet access only after a comparison against `data_end` that it can
//! see; [`Frame::load`] is that comparison, written once. Programs go through it, never through
//! raw offsets.

/// A received frame: its bytes are readable between `start()` and `end()`.
pub trait Frame {
    /// Address of the first byte.
    fn start(&self) -> usize;
    /// Address one past the last byte.
    fn end(&self) -> usize;

    /// Length of the frame in bytes.
    #[inline(always)]
    fn len(&self) -> usize {
        self.end() - self.start()
    }

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pointer to a `T` at `offset`, or `None` if the frame is too short.
    ///
    /// `T` must be a plain-old-data header type (`#[repr(C)]`, alignment 1).
    #[inline(always)]
    fn ptr_at<T>(&self, offset: usize) -> Option<*const T> {
        let start = self.start();
        let end = self.end();
        let size = core::mem::size_of::<T>();
        if start + offset + size > end {
            return None;
        }
        Some((start + offset) as *const T)
    }

    /// Mutable pointer to a `T` at `offset`, or `None` if the frame is too short.
    #[inline(always)]
    fn ptr_at_mut<T>(&self, offset: usize) -> Option<*mut T> {
        self.ptr_at::<T>(offset).map(|p| p as *mut T)
    }

    /// Copy of the `T` at `offset`, or `None` if the frame is too short.
    #[inline(always)]
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        let p = self.ptr_at::<T>(offset)?;
        // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes at `p` lie inside the frame;
        // header types have alignment 1, and `read_unaligned` does not require more.
        Some(unsafe { core::ptr::read_unaligned(p) })
    }
}

/// A byte slice as a frame, for host-side tests.
#[cfg(test)]
impl Frame for &[u8] {
    fn start(&self) -> usize {
        self.as_ptr() as usize
    }
    fn end(&self) -> usize {
        self.as_ptr() as usize + <[u8]>::len(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_refuses_reads_past_the_end() {
        let bytes: &[u8] = &[1, 2, 3, 4];
        assert_eq!(bytes.load::<[u8; 4]>(0), Some([1, 2, 3, 4]));
        assert_eq!(bytes.load::<[u8; 2]>(2), Some([3, 4]));
        assert_eq!(bytes.load::<[u8; 2]>(3), None);
        assert_eq!(bytes.load::<[u8; 5]>(0), None);
    }
}
