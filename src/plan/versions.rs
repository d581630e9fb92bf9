//! Ordering release and stemcell versions the way operators read them, so that `latest` means
//! the highest uploaded version: `56.26.0 > 56.9.1`, `1.406 > 1.99`, `1 > 0+dev.12`,
//! `0+dev.10 > 0+dev.9`, `2.0.0-rc.1 < 2.0.0`.
//!
//! A version is `release[-pre][+post]`, each part dot-separated segments (BOSH's
//! semi-semantic versions). Parts compare in order; numeric segments numerically, others as
//! text, a number before a word; a missing segment counts as `0`. A pre-release sorts before
//! its release and a post-release (`+dev.N`) after it. Versions that compare equal this way
//! (`1.0` and `1`) fall back to plain text order so that sorting is total and stable.

use std::cmp::Ordering;

/// Compares two versions (see the module documentation).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (ra, pa, qa) = split(a);
    let (rb, pb, qb) = split(b);
    compare_parts(ra, rb)
        .then_with(|| match (pa, pb) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => compare_parts(x, y),
        })
        .then_with(|| match (qa, qb) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => compare_parts(x, y),
        })
        .then_with(|| a.cmp(b))
}

/// The highest of `versions`, by [`compare_versions`].
pub fn highest<'a>(versions: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    versions.into_iter().max_by(|a, b| compare_versions(a, b))
}

fn split(v: &str) -> (&str, Option<&str>, Option<&str>) {
    let (main, post) = match v.split_once('+') {
        Some((m, p)) => (m, Some(p)),
        None => (v, None),
    };
    let (release, pre) = match main.split_once('-') {
        Some((r, p)) => (r, Some(p)),
        None => (main, None),
    };
    (release, pre, post)
}

fn compare_parts(a: &str, b: &str) -> Ordering {
    let xs: Vec<&str> = a.split('.').collect();
    let ys: Vec<&str> = b.split('.').collect();
    for i in 0..xs.len().max(ys.len()) {
        let x = xs.get(i).copied().unwrap_or("0");
        let y = ys.get(i).copied().unwrap_or("0");
        let ord = match (x.parse::<u128>(), y.parse::<u128>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically_with_dev_and_rc_suffixes() {
        let mut versions =
            vec!["56.9.1", "0+dev.10", "1.406", "56.26.0", "0+dev.9", "1", "1.99", "2.0.0-rc.1", "2.0.0"];
        versions.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(versions, ["0+dev.9", "0+dev.10", "1", "1.99", "1.406", "2.0.0-rc.1", "2.0.0", "56.9.1", "56.26.0"]);
        assert_eq!(highest(["3", "12", "9"]), Some("12"));
        assert_eq!(compare_versions("1+dev.1", "1"), Ordering::Greater);
    }
}
