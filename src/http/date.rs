//! HTTP dates (RFC 9110 §5.6.7), formatted once per second and shared by every line that
//! needs one (`Date`, `Last-Modified`, the access log, daytime).

use std::time::SystemTime;

/// An IMF-fixdate (RFC 9110 §5.6.7), formatted at most once per distinct second per thread:
/// `Date` and the `Last-Modified` of hot files repeat from one response to the next, and the
/// access log's time is the same second again. Memoization only; the result depends on `time`
/// alone.
pub fn http_date(time: SystemTime) -> ImfDate {
    /// Recently formatted seconds, replaced round-robin.
    const SLOTS: usize = 4;
    /// (the time last asked for, its second, its text) for each slot, and the slot to replace
    /// next. A turn's `now` and a hot file's mtime are asked for again as the very same
    /// value, found without even working out the second.
    type Recent = ([(SystemTime, u64, [u8; 29]); SLOTS], usize);
    thread_local! {
        static RECENT: std::cell::RefCell<Recent> = const {
            std::cell::RefCell::new(([(std::time::UNIX_EPOCH, u64::MAX, [b' '; 29]); SLOTS], 0))
        };
    }
    RECENT.with_borrow_mut(|(slots, next)| {
        if let Some((_, _, text)) =
            slots.iter().find(|(asked, second, _)| *asked == time && *second != u64::MAX)
        {
            return ImfDate(*text);
        }
        let second = time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if let Some((asked, _, text)) = slots.iter_mut().find(|(_, cached, _)| *cached == second) {
            *asked = time;
            return ImfDate(*text);
        }
        let text = httpdate::fmt_http_date(time).as_bytes().try_into().unwrap_or([b' '; 29]);
        slots[*next] = (time, second, text);
        *next = (*next + 1) % SLOTS;
        ImfDate(text)
    })
}

/// `Sun, 22 Nov 2026 03:24:29 GMT`: always 29 ASCII bytes with every field at a fixed place,
/// so the other date formats we write (access log, daytime) take its fields instead of
/// formatting and splitting again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImfDate(pub(super) [u8; 29]);

impl ImfDate {
    fn field(&self, range: std::ops::Range<usize>) -> &str {
        std::str::from_utf8(&self.0[range]).unwrap_or_default()
    }

    /// `Sun`
    pub fn weekday(&self) -> &str {
        self.field(0..3)
    }

    /// `22` (two digits)
    pub fn day(&self) -> &str {
        self.field(5..7)
    }

    /// `Nov`
    pub fn month(&self) -> &str {
        self.field(8..11)
    }

    /// `2026`
    pub fn year(&self) -> &str {
        self.field(12..16)
    }

    /// `03:24:29`
    pub fn clock(&self) -> &str {
        self.field(17..25)
    }
}

impl std::fmt::Display for ImfDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.field(0..29))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_322_700)
    }

    #[test]
    fn imf_dates_give_their_fields() {
        let date = http_date(now());
        assert_eq!(date.to_string(), "Sun, 22 Nov 2026 04:45:00 GMT");
        let fields = [date.weekday(), date.day(), date.month(), date.year(), date.clock()];
        assert_eq!(fields, ["Sun", "22", "Nov", "2026", "04:45:00"]);
        assert_eq!(http_date(UNIX_EPOCH).day(), "01");
    }
}
