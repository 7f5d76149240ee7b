//! Staged rollouts of a release (docs/firmware.md): the target (every device of the release's
//! model, or a list) is fixed and shuffled when the rollout is made; each stage offers the next
//! share of it. `tend_rollouts` (run every second by the composition root) aborts a rollout whose
//! failures pass its threshold, and moves a finished stage on after its soak time; admins advance,
//! pause, resume and abort by hand.

use std::time::Duration;

use audit::{Action, Target};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use firmware::{Counts, Next, OtaState, Policy, Stages};
use model::DeviceId;
use registry::{ModelName, Tag};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::{Release, Rollout, Selection};

use crate::api::caller::Admin;
use crate::firmware::{check_targets, offer_to};
use crate::{ApiContext, ApiError};

const RUNNING: &str = "running";
const PAUSED: &str = "paused";
const COMPLETED: &str = "completed";
const ABORTED: &str = "aborted";
/// The most devices one rollout targets.
const MAX_TARGET: usize = 100_000;

pub(crate) fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/api/v1/admin/rollouts", get(list).post(create))
        .route("/api/v1/admin/rollouts/{rollout_id}", get(status))
        .route("/api/v1/admin/rollouts/{rollout_id}/{step}", post(step))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRollout {
    release_id: String,
    /// The devices to update; without it (and without `tag`), every device of the release's
    /// model.
    #[serde(default)]
    devices: Option<Vec<String>>,
    /// Every device with this tag (all must be of the release's model).
    #[serde(default)]
    tag: Option<String>,
    #[serde(default = "all_at_once")]
    stages: Vec<u8>,
    /// Seconds a finished stage soaks before the next starts on its own; without it, an admin
    /// advances each stage.
    #[serde(default)]
    soak_seconds: Option<u64>,
    #[serde(default = "default_threshold")]
    failure_threshold_percent: u8,
    #[serde(default)]
    allow_downgrade: bool,
}

fn all_at_once() -> Vec<u8> {
    vec![100]
}

fn default_threshold() -> u8 {
    20
}

/// `POST /api/v1/admin/rollouts`: makes a rollout and starts its first stage.
async fn create(
    admin: Admin,
    State(context): State<ApiContext>,
    Json(request): Json<NewRollout>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bad = |message: String| ApiError::BadRequest(message);
    let stages = Stages::new(request.stages.clone()).map_err(|error| bad(error.to_string()))?;
    if request.failure_threshold_percent > 100 {
        return Err(bad("failure_threshold_percent is 0 to 100".into()));
    }
    let release = context
        .store
        .firmware()
        .release(&request.release_id)
        .await?
        .ok_or_else(|| bad(format!("there is no release {}", request.release_id)))?;
    let mut devices = match (&request.devices, &request.tag) {
        (Some(_), Some(_)) => {
            return Err(bad("a rollout targets devices or a tag, not both".into()));
        }
        (Some(list), None) => list
            .iter()
            .map(|text| DeviceId::parse(text).map_err(|error| bad(format!("{text:?}: {error}"))))
            .collect::<Result<Vec<_>, _>>()?,
        (None, Some(tag)) => {
            let tag = Tag::parse(tag).map_err(|error| bad(format!("{tag:?}: {error}")))?;
            select(&context, Selection::Tag(&tag)).await?
        }
        (None, None) => {
            let model = ModelName::parse(&release.model)
                .map_err(|error| ApiError::Internal(error.into()))?;
            select(&context, Selection::Model(&model)).await?
        }
    };
    devices.sort();
    devices.dedup();
    if devices.is_empty() || devices.len() > MAX_TARGET {
        return Err(bad(format!("a rollout targets 1 to {MAX_TARGET} devices")));
    }
    check_targets(&context, &release, &devices, request.allow_downgrade).await?;
    let now = context.identity.clock.now();
    let rollout_id = format!("ro_{}", uuid::Uuid::now_v7().simple());
    // A shuffle of its own for each rollout, so that no device is always first.
    devices.sort_by_cached_key(|device| Sha256::digest(format!("{rollout_id}/{device}")));
    let rollout = Rollout {
        rollout_id,
        release_id: release.release_id.clone(),
        stages: stages.percentages().to_vec(),
        soak_seconds: request.soak_seconds,
        failure_threshold: request.failure_threshold_percent,
        allow_downgrade: request.allow_downgrade,
        state: RUNNING.into(),
        stage: 0,
        stage_done_at: None,
        reason: None,
        created_at: now,
        updated_at: now,
    };
    context
        .store
        .firmware()
        .insert_rollout(&rollout, &devices)
        .await?;
    let offered = offer_stage(&context, &rollout, &release).await?;
    admin
        .audit(
            &context,
            Action::FirmwareRollout,
            Target::new("rollout", &rollout.rollout_id),
            json!({ "step": "create", "release": release.release_id, "devices": devices.len(), "tag": request.tag, "stages": rollout.stages, "first_stage_offered": offered }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(rollout_json(&context, &rollout).await?),
    ))
}

/// Every device of `model`, a page at a time.
/// The devices `selection` picks; more than a rollout may target is refused.
async fn select(context: &ApiContext, selection: Selection<'_>) -> Result<Vec<DeviceId>, ApiError> {
    let limit = u32::try_from(MAX_TARGET + 1).unwrap_or(u32::MAX);
    Ok(context.store.devices().select(selection, limit).await?)
}

/// The most rollouts one list shows.
const LISTED: u32 = 100;

/// `GET /api/v1/admin/rollouts`: the newest rollouts, newest first, with their counts.
async fn list(_admin: Admin, State(context): State<ApiContext>) -> Result<Json<Value>, ApiError> {
    let rollouts = context.store.firmware().recent_rollouts(LISTED).await?;
    let mut items = Vec::with_capacity(rollouts.len());
    for rollout in &rollouts {
        items.push(rollout_json(&context, rollout).await?);
    }
    Ok(Json(json!({ "rollouts": items })))
}

/// `GET /api/v1/admin/rollouts/{id}`.
async fn status(
    _admin: Admin,
    State(context): State<ApiContext>,
    Path(rollout_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rollout = find(&context, &rollout_id).await?;
    Ok(Json(rollout_json(&context, &rollout).await?))
}

/// `POST /api/v1/admin/rollouts/{id}/{advance|pause|resume|abort}`.
async fn step(
    admin: Admin,
    State(context): State<ApiContext>,
    Path((rollout_id, step)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let rollout = find(&context, &rollout_id).await?;
    let conflict =
        |message: &str| ApiError::Conflict(format!("the rollout is {}: {message}", rollout.state));
    let changed = match (step.as_str(), rollout.state.as_str()) {
        ("advance", RUNNING) if rollout.stage < rollout.stages.len() - 1 => {
            advance(&context, &rollout).await?
        }
        ("advance", RUNNING) => return Err(conflict("it is at its last stage")),
        ("pause", RUNNING) => moved(&context, &rollout, PAUSED, None).await?,
        ("resume", PAUSED) => moved(&context, &rollout, RUNNING, None).await?,
        ("abort", RUNNING | PAUSED) => abort(&context, &rollout, "aborted by an admin").await?,
        ("advance" | "pause" | "resume" | "abort", _) => {
            return Err(conflict("that step does not apply"));
        }
        _ => return Err(ApiError::NotFound),
    };
    let Some(changed) = changed else {
        return Err(ApiError::Conflict(
            "the rollout changed meanwhile; read it and try again".into(),
        ));
    };
    admin
        .audit(
            &context,
            Action::FirmwareRollout,
            Target::new("rollout", &rollout.rollout_id),
            json!({ "step": step, "stage": changed.stage, "state": changed.state }),
        )
        .await?;
    Ok(Json(rollout_json(&context, &changed).await?))
}

async fn find(context: &ApiContext, rollout_id: &str) -> Result<Rollout, ApiError> {
    context
        .store
        .firmware()
        .rollout(rollout_id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Offers the rollout's release to the devices its current stage reaches; returns how many were
/// newly offered it.
async fn offer_stage(
    context: &ApiContext,
    rollout: &Rollout,
    release: &Release,
) -> Result<usize, ApiError> {
    let stages = stages_of(rollout)?;
    let firmware = context.store.firmware();
    let total = firmware.rollout_size(&rollout.rollout_id).await?;
    let devices = firmware
        .rollout_devices(&rollout.rollout_id, stages.reach(rollout.stage, total))
        .await?;
    Ok(
        offer_to(context, release, &devices, rollout.allow_downgrade)
            .await?
            .len(),
    )
}

fn stages_of(rollout: &Rollout) -> Result<Stages, ApiError> {
    Stages::new(rollout.stages.clone()).map_err(|error| ApiError::Internal(error.into()))
}

/// Writes `rollout` with another state (and reason); `None` when it changed meanwhile.
async fn moved(
    context: &ApiContext,
    rollout: &Rollout,
    state: &str,
    reason: Option<String>,
) -> Result<Option<Rollout>, ApiError> {
    let to = Rollout {
        state: state.to_owned(),
        reason,
        updated_at: context.identity.clock.now(),
        ..rollout.clone()
    };
    let written = context
        .store
        .firmware()
        .update_rollout(rollout, &to)
        .await?;
    Ok(written.then_some(to))
}

/// Moves to the next stage and offers it.
async fn advance(context: &ApiContext, rollout: &Rollout) -> Result<Option<Rollout>, ApiError> {
    let to = Rollout {
        stage: rollout.stage + 1,
        stage_done_at: None,
        updated_at: context.identity.clock.now(),
        ..rollout.clone()
    };
    if !context
        .store
        .firmware()
        .update_rollout(rollout, &to)
        .await?
    {
        return Ok(None);
    }
    let release = context
        .store
        .firmware()
        .release(&rollout.release_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    offer_stage(context, &to, &release).await?;
    Ok(Some(to))
}

/// Stops the rollout: updates offered and not started end as failed with `reason`, and their
/// retained offer is withdrawn; devices already updating finish.
async fn abort(
    context: &ApiContext,
    rollout: &Rollout,
    reason: &str,
) -> Result<Option<Rollout>, ApiError> {
    let Some(aborted) = moved(context, rollout, ABORTED, Some(reason.to_owned())).await? else {
        return Ok(None);
    };
    let firmware = context.store.firmware();
    let total = firmware.rollout_size(&rollout.rollout_id).await?;
    let devices = firmware.rollout_devices(&rollout.rollout_id, total).await?;
    let now = context.identity.clock.now();
    let withdrawn = firmware
        .withdraw_offers(
            &rollout.release_id,
            &devices,
            &format!("rollout aborted: {reason}"),
            now,
        )
        .await?;
    if let Some(messages) = context.devices.messages() {
        for device_id in &withdrawn {
            messages.withdraw_ota(device_id).await;
        }
    }
    tracing::warn!(rollout = %rollout.rollout_id, reason, withdrawn = withdrawn.len(), "rollout aborted");
    Ok(Some(aborted))
}

/// Where a rollout's devices are, and how many it targets.
async fn progress(context: &ApiContext, rollout: &Rollout) -> Result<(Counts, usize), ApiError> {
    let firmware = context.store.firmware();
    let total = firmware.rollout_size(&rollout.rollout_id).await?;
    let mut counts = Counts::default();
    for (state, devices) in firmware.rollout_states(rollout).await? {
        match state {
            OtaState::Succeeded => counts.succeeded += devices,
            OtaState::Failed => counts.failed += devices,
            _ => counts.in_flight += devices,
        }
    }
    Ok((counts, total))
}

/// One pass over the running rollouts: each aborts, moves on, completes or waits as its policy
/// says. Errors are logged and the rollout is tended again on the next pass.
pub async fn tend_rollouts(context: &ApiContext) {
    let running = match context.store.firmware().rollouts_in(RUNNING).await {
        Ok(running) => running,
        Err(error) => {
            tracing::warn!(%error, "cannot read the running rollouts");
            return;
        }
    };
    for rollout in running {
        if let Err(error) = tend(context, &rollout).await {
            tracing::warn!(%error, rollout = %rollout.rollout_id, "cannot tend a rollout");
        }
    }
}

async fn tend(context: &ApiContext, rollout: &Rollout) -> Result<(), ApiError> {
    let stages = stages_of(rollout)?;
    let (counts, total) = progress(context, rollout).await?;
    let now = context.identity.clock.now();
    let offered = counts.in_flight + counts.succeeded + counts.failed;
    let stage_done = counts.in_flight == 0 && offered >= stages.reach(rollout.stage, total) as u64;
    // The moment every device of the stage had finished starts its soak.
    let mut rollout = rollout.clone();
    if stage_done && rollout.stage_done_at.is_none() {
        let to = Rollout {
            stage_done_at: Some(now),
            updated_at: now,
            ..rollout.clone()
        };
        if !context
            .store
            .firmware()
            .update_rollout(&rollout, &to)
            .await?
        {
            return Ok(());
        }
        rollout = to;
    }
    let policy = Policy {
        stages,
        soak: rollout.soak_seconds.map(Duration::from_secs),
        failure_threshold: f64::from(rollout.failure_threshold),
    };
    let done_at = rollout.stage_done_at.filter(|_| stage_done);
    let event = match policy.next(rollout.stage, counts, done_at, now) {
        Next::Abort(reason) => abort(context, &rollout, &reason).await?.map(|_| "abort"),
        Next::Advance => advance(context, &rollout).await?.map(|_| "advance"),
        Next::Complete => moved(context, &rollout, COMPLETED, None)
            .await?
            .map(|_| "complete"),
        Next::Wait => None,
    };
    if let Some(event) = event {
        let record = audit::Record::new(
            now,
            audit::Actor::Part {
                name: "rollouts".into(),
            },
            Action::FirmwareRollout,
            Target::new("rollout", &rollout.rollout_id),
        )
        .detail(json!({ "step": event, "stage": rollout.stage, "succeeded": counts.succeeded, "failed": counts.failed }));
        context
            .audit
            .append(record)
            .await
            .map_err(|error| ApiError::Internal(Box::new(error)))?;
        tracing::info!(rollout = %rollout.rollout_id, event, "rollout moved");
    }
    Ok(())
}

async fn rollout_json(context: &ApiContext, rollout: &Rollout) -> Result<Value, ApiError> {
    let (counts, total) = progress(context, rollout).await?;
    Ok(json!({
        "rollout_id": rollout.rollout_id,
        "release_id": rollout.release_id,
        "state": rollout.state,
        "reason": rollout.reason,
        "stages": rollout.stages,
        "stage": rollout.stage,
        "soak_seconds": rollout.soak_seconds,
        "failure_threshold_percent": rollout.failure_threshold,
        "allow_downgrade": rollout.allow_downgrade,
        "devices": total,
        "offered": counts.in_flight + counts.succeeded + counts.failed,
        "in_flight": counts.in_flight,
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "created_at": rollout.created_at.to_rfc3339(),
        "updated_at": rollout.updated_at.to_rfc3339(),
    }))
}
