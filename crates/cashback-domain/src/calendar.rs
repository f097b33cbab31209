//! The programme's calendar: "today" is the civil date in Italy (Europe/Rome), as the original
//! services ran with `TZ=Europe/Rome`. The caller passes the instant; nothing here reads a clock.
//!
//! Rule: Europe/Rome is UTC+1, and UTC+2 from 01:00 UTC on the last Sunday of March to 01:00 UTC
//! on the last Sunday of October (the EU rule in force since 1996).

use time::{Date, Month, OffsetDateTime, UtcOffset, Weekday};

fn last_sunday(year: i32, month: Month) -> Date {
    let mut d = Date::from_calendar_date(year, month, month.length(year)).expect("valid date");
    while d.weekday() != Weekday::Sunday {
        d = d.previous_day().expect("in range");
    }
    d
}

/// The UTC offset of Europe/Rome at an instant.
pub fn rome_offset(instant: OffsetDateTime) -> UtcOffset {
    let utc = instant.to_offset(UtcOffset::UTC);
    let year = utc.year();
    let start = last_sunday(year, Month::March).with_hms(1, 0, 0).expect("valid").assume_utc();
    let end = last_sunday(year, Month::October).with_hms(1, 0, 0).expect("valid").assume_utc();
    if utc >= start && utc < end {
        UtcOffset::from_hms(2, 0, 0).expect("valid")
    } else {
        UtcOffset::from_hms(1, 0, 0).expect("valid")
    }
}

/// The civil date in Italy at an instant: the "today" of award periods and age checks.
pub fn rome_date(instant: OffsetDateTime) -> Date {
    instant.to_offset(rome_offset(instant)).date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn winter_and_summer_offsets() {
        assert_eq!(rome_offset(datetime!(2021-01-15 12:00 UTC)).whole_hours(), 1);
        assert_eq!(rome_offset(datetime!(2021-07-15 12:00 UTC)).whole_hours(), 2);
        // 2021: DST from 28 March 01:00 UTC to 31 October 01:00 UTC.
        assert_eq!(rome_offset(datetime!(2021-03-28 00:59 UTC)).whole_hours(), 1);
        assert_eq!(rome_offset(datetime!(2021-03-28 01:00 UTC)).whole_hours(), 2);
        assert_eq!(rome_offset(datetime!(2021-10-31 00:59 UTC)).whole_hours(), 2);
        assert_eq!(rome_offset(datetime!(2021-10-31 01:00 UTC)).whole_hours(), 1);
    }

    #[test]
    fn date_rolls_over_at_rome_midnight() {
        // 23:30 UTC on 31 Dec is already 1 Jan in Rome.
        assert_eq!(rome_date(datetime!(2020-12-31 23:30 UTC)), time::macros::date!(2021 - 01 - 01));
        assert_eq!(rome_date(datetime!(2020-12-31 22:30 UTC)), time::macros::date!(2020 - 12 - 31));
        // Summer: 22:30 UTC on 30 June is 00:30 on 1 July.
        assert_eq!(rome_date(datetime!(2021-06-30 22:30 UTC)), time::macros::date!(2021 - 07 - 01));
    }
}
