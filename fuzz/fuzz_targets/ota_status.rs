//! A device's firmware update report on `devices/{id}/ota/status`, as Warden reads it
//! (`firmware::StatusReport::parse`, called by `http_api::record_ota_status`) and applies it to
//! the update's state (`firmware::OtaState::after`).
//!
//! Input: the MQTT payload.
//!
//! Properties: parsing never panics; a report never claims `offered` (only Warden offers); its
//! progress is at most 100; a failure always carries a reason; a reason is at most 200
//! characters, without control characters and not blank; and from every state the report either
//! moves the update forward (or leaves it) or is refused, never moving it out of a final state or
//! back to an earlier one.

#![no_main]

use firmware::{OtaState, StatusReport};
use libfuzzer_sys::fuzz_target;
use warden_fuzz::check;

const STATES: [OtaState; 5] = [
    OtaState::Offered,
    OtaState::Downloading,
    OtaState::Installing,
    OtaState::Succeeded,
    OtaState::Failed,
];

fuzz_target!(|data: &[u8]| {
    let Ok(report) = StatusReport::parse(data) else {
        return;
    };
    check!(
        "ota-report",
        report.state != OtaState::Offered,
        "a report of {report:?}"
    );
    check!(
        "ota-report",
        report.progress.is_none_or(|progress| progress <= 100),
        "a report of {report:?}"
    );
    check!(
        "ota-report",
        report.state != OtaState::Failed || report.reason.is_some(),
        "a failure without a reason: {report:?}"
    );
    if let Some(reason) = &report.reason {
        check!(
            "ota-report",
            reason.chars().count() <= 200
                && !reason.chars().any(char::is_control)
                && !reason.trim().is_empty(),
            "a reason of {reason:?}"
        );
    }
    let _ = OtaState::parse(report.state.as_str());
    for current in STATES {
        if let Ok(next) = current.after(report.state) {
            check!(
                "ota-forward",
                next == current || (!current.is_final() && next > current),
                "{current:?} became {next:?}"
            );
        }
    }
});
