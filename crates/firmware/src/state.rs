//! One device's way through an update: offered → downloading → installing → succeeded, or failed
//! with a reason from any step before the end. Devices report on `devices/{id}/ota/status`;
//! only forward moves are taken, and a report repeated (a resend after a lost acknowledgement)
//! changes nothing.

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OtaState {
    Offered,
    Downloading,
    Installing,
    Succeeded,
    Failed,
}

impl OtaState {
    pub fn as_str(self) -> &'static str {
        match self {
            OtaState::Offered => "offered",
            OtaState::Downloading => "downloading",
            OtaState::Installing => "installing",
            OtaState::Succeeded => "succeeded",
            OtaState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            OtaState::Offered,
            OtaState::Downloading,
            OtaState::Installing,
            OtaState::Succeeded,
            OtaState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }

    /// Whether the update is over, one way or the other.
    pub fn is_final(self) -> bool {
        matches!(self, OtaState::Succeeded | OtaState::Failed)
    }

    /// The state after a device reports `reported`: forward only (a step may be skipped, a
    /// device need not report every one), failure from any step before the end, the same state
    /// again as a no-op. Nothing leaves a final state.
    pub fn after(self, reported: OtaState) -> Result<OtaState, TransitionError> {
        let allowed = reported == self
            || (!self.is_final() && reported != OtaState::Offered && reported > self);
        if allowed {
            Ok(reported)
        } else {
            Err(TransitionError {
                from: self,
                to: reported,
            })
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an update that is {} cannot become {}", .from.as_str(), .to.as_str())]
pub struct TransitionError {
    pub from: OtaState,
    pub to: OtaState,
}

/// What a device says on `devices/{id}/ota/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusReport {
    pub release: String,
    pub state: OtaState,
    /// Percent downloaded, 0–100, while downloading.
    pub progress: Option<u8>,
    /// Why it failed, in the device's words (cut to 200 characters).
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatusError {
    #[error("the status is not JSON of the form {{\"release\": …, \"state\": …}}: {0}")]
    Malformed(String),
    #[error("unknown state {0:?}: downloading, installing, succeeded or failed")]
    UnknownState(String),
    #[error("a failure must say why (\"reason\")")]
    FailureWithoutReason,
}

/// The most characters of a device's failure reason that are kept.
const MAX_REASON: usize = 200;

impl StatusReport {
    pub fn parse(payload: &[u8]) -> Result<Self, StatusError> {
        #[derive(Deserialize)]
        struct Wire {
            release: String,
            state: String,
            #[serde(default)]
            progress: Option<u8>,
            #[serde(default)]
            reason: Option<String>,
        }
        let wire: Wire = serde_json::from_slice(payload)
            .map_err(|error| StatusError::Malformed(error.to_string()))?;
        let state = OtaState::parse(&wire.state)
            .filter(|state| *state != OtaState::Offered)
            .ok_or_else(|| StatusError::UnknownState(wire.state.clone()))?;
        let reason = wire
            .reason
            .map(|reason| {
                reason
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_REASON)
                    .collect::<String>()
            })
            .filter(|reason| !reason.trim().is_empty());
        if state == OtaState::Failed && reason.is_none() {
            return Err(StatusError::FailureWithoutReason);
        }
        Ok(Self {
            release: wire.release,
            state,
            progress: wire.progress.map(|progress| progress.min(100)),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::OtaState::*;
    use super::*;

    #[test]
    fn only_forward_moves_and_failures_before_the_end_are_taken() {
        let all = [Offered, Downloading, Installing, Succeeded, Failed];
        let allowed = [
            (Offered, Offered),
            (Offered, Downloading),
            (Offered, Installing),
            (Offered, Succeeded),
            (Offered, Failed),
            (Downloading, Downloading),
            (Downloading, Installing),
            (Downloading, Succeeded),
            (Downloading, Failed),
            (Installing, Installing),
            (Installing, Succeeded),
            (Installing, Failed),
            (Succeeded, Succeeded),
            (Failed, Failed),
        ];
        for from in all {
            for to in all {
                let expected = allowed.contains(&(from, to));
                assert_eq!(from.after(to).is_ok(), expected, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn status_reports_are_parsed_and_checked() {
        let report =
            StatusReport::parse(br#"{"release":"fw_1","state":"downloading","progress":140}"#)
                .unwrap();
        assert_eq!((report.state, report.progress), (Downloading, Some(100)));
        let failed = StatusReport::parse(
            br#"{"release":"fw_1","state":"failed","reason":"bad\u0007 hash"}"#,
        )
        .unwrap();
        assert_eq!(failed.reason.as_deref(), Some("bad hash"));
        assert_eq!(
            StatusReport::parse(br#"{"release":"fw_1","state":"failed"}"#),
            Err(StatusError::FailureWithoutReason)
        );
        assert!(matches!(
            StatusReport::parse(br#"{"release":"fw_1","state":"offered"}"#),
            Err(StatusError::UnknownState(_))
        ));
        assert!(matches!(
            StatusReport::parse(b"nope"),
            Err(StatusError::Malformed(_))
        ));
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in [Offered, Downloading, Installing, Succeeded, Failed] {
            assert_eq!(OtaState::parse(state.as_str()), Some(state));
        }
        assert_eq!(OtaState::parse("done"), None);
    }
}
