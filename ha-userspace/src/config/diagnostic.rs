//! The hints every configuration parser gives the same way: "did you mean" for a near-miss
//! keyword, and the corrected address for one with letters that look like digits.
//! `mip6d.conf` ([`super::umip`]) and setkey files ([`super::setkey`]) both use these, so a
//! typo gets the same suggestion whichever file it is in.

use std::net::Ipv6Addr;

/// Words longer than this get no suggestion: no keyword is that long, and a long word may be
/// key material (the distance computation would only cost time).
const MAX_SUGGESTED_LEN: usize = 40;

/// Case-insensitive Levenshtein distance, in characters.
pub fn distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(&a.to_lowercase(), &b.to_lowercase())
}

/// The keyword of `known` nearest to `w`, if it is near enough to be a typo: at most a quarter
/// of `w`'s length away (but at least 2), and less than all of it.
pub fn closest<'k>(w: &str, known: &[&'k str]) -> Option<&'k str> {
    let len = w.chars().count();
    if len > MAX_SUGGESTED_LEN {
        return None;
    }
    let limit = (len / 4).max(2);
    known
        .iter()
        .map(|k| (distance(w, k), *k))
        .filter(|(d, _)| *d <= limit && *d < len)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// For an address with letters that look like digits (`coo1` → `c001`), the corrected address.
pub fn homoglyph_fix(w: &str) -> Option<Ipv6Addr> {
    let fixed: String = w
        .chars()
        .map(|c| match c {
            'o' | 'O' => '0',
            'l' | 'I' => '1',
            _ => c,
        })
        .collect();
    if fixed == w {
        return None;
    }
    fixed.parse().ok()
}

/// The hint for an address that does not parse because of such letters.
pub fn homoglyph_help(w: &str) -> Option<String> {
    homoglyph_fix(w).map(|fixed| {
        format!("did you mean {fixed}? The letters o/O and l/I are not hexadecimal digits")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested_far_ones_are_not() {
        let known = [
            "BindingAclPolicy",
            "DefaultBindingAclPolicy",
            "HaMaxBindingLife",
        ];
        assert_eq!(closest("BindingAclPolcy", &known), Some("BindingAclPolicy"));
        assert_eq!(
            closest("bindingaclpolicy", &known),
            Some("BindingAclPolicy")
        );
        assert_eq!(
            closest("HaMaxBindingLive", &known),
            Some("HaMaxBindingLife")
        );
        assert_eq!(closest("Interface", &known), None);
        // Two letters: "less than all of it".
        assert_eq!(closest("ah", &["esp", "ah"]), Some("ah"));
        assert_eq!(closest("xy", &["esp", "ah"]), None);
        assert_eq!(closest(&"a".repeat(41), &[&"a".repeat(40)]), None);
    }

    #[test]
    fn letters_that_look_like_digits_are_corrected() {
        assert_eq!(
            homoglyph_fix("2001:db8:bee5::coo1:babe"),
            Some("2001:db8:bee5::c001:babe".parse().unwrap())
        );
        assert_eq!(homoglyph_fix("2001:db8::1"), None);
        assert_eq!(homoglyph_fix("hello"), None);
    }
}
