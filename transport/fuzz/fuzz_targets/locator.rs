//! Service locator and poll-mode parsers: never panic; Display round-trips.
#![no_main]
use faascache_transport::{PollMode, ServiceLocator};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(l) = s.parse::<ServiceLocator>() {
            assert_eq!(l.to_string().parse::<ServiceLocator>(), Ok(l));
        }
        if let Ok(m) = s.parse::<PollMode>() {
            assert_eq!(m.to_string().parse::<PollMode>(), Ok(m));
        }
    }
});
