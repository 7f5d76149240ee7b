//! The commands that act as the person logged in: each is one or a few calls of the public API
//! (docs/http-api.md), printed as a table or, with `--json`, as the API's JSON.

use anyhow::{Context, anyhow};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::session::{Api, refusal};
use super::table::{cell, print_fields, print_json, print_table, shorten, spinner};
use crate::Failure;
use crate::args::{DevicesCommand, GrantsCommand, SettingsCommand};

/// How often a settings change is tried again when someone else changed the settings meanwhile.
const SETTINGS_ATTEMPTS: usize = 3;
/// The longest a grant may run: 90 days.
const MAX_GRANT_SECONDS: u64 = 90 * 24 * 3600;

pub(crate) async fn devices(command: DevicesCommand) -> Result<(), Failure> {
    let mut api = Api::open()?;
    match command {
        DevicesCommand::List { output } => {
            let answer = api.get("/api/v1/devices").await?;
            if output.json {
                print_json(&answer);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items(&answer, "devices")
                .iter()
                .map(|device| {
                    vec![
                        cell(&device["device_id"]),
                        cell(&device["model"]),
                        cell(&device["online"]),
                        cell(&device["firmware_version"]),
                        cell(&device["last_seen_at"]),
                        permissions(&device["permissions"]),
                    ]
                })
                .collect();
            print_table(
                &[
                    "DEVICE",
                    "MODEL",
                    "ONLINE",
                    "FIRMWARE",
                    "LAST SEEN",
                    "YOU MAY",
                ],
                &rows,
            );
        }
        DevicesCommand::Show { device_id, output } => {
            let device = api.get(&device_path(&device_id)?).await?;
            if output.json {
                print_json(&device);
                return Ok(());
            }
            print_fields(&[
                ("device", cell(&device["device_id"])),
                ("model", cell(&device["model"])),
                ("online", cell(&device["online"])),
                ("last seen", cell(&device["last_seen_at"])),
                ("firmware", cell(&device["firmware_version"])),
                ("access", cell(&device["access"])),
                ("you may", permissions(&device["permissions"])),
            ]);
        }
        DevicesCommand::Claim {
            device_id,
            claim_code,
        } => {
            api.post(
                "/api/v1/devices/claim",
                &json!({ "device_id": device_id, "claim_code": claim_code }),
            )
            .await?;
            println!("Claimed {device_id}");
        }
        DevicesCommand::Release { device_id, yes } => {
            if !yes {
                return Err(Failure::Input(anyhow!(
                    "releasing resets {device_id} to factory state and ends every grant; add --yes to do it"
                )));
            }
            api.post(&format!("{}/release", device_path(&device_id)?), &json!({}))
                .await?;
            println!("Released {device_id}");
        }
        DevicesCommand::Transfer { device_id, email } => {
            api.post(
                &format!("{}/transfer", device_path(&device_id)?),
                &json!({ "email": email }),
            )
            .await?;
            println!("Transferred {device_id} to {email}");
        }
        DevicesCommand::Settings(command) => settings(&mut api, command).await?,
        DevicesCommand::Command {
            device_id,
            name,
            payload,
            wait,
            output,
        } => {
            let payload: Value = match payload {
                Some(text) => serde_json::from_str(&text)
                    .with_context(|| format!("--payload is not JSON: {text}"))
                    .map_err(Failure::Input)?,
                None => json!({}),
            };
            let waiting = (wait > 0)
                .then(|| spinner(format!("Waiting up to {wait} s for {device_id} to answer…")));
            let answer = api
                .post(
                    &format!("{}/commands", device_path(&device_id)?),
                    &json!({ "name": name, "payload": payload, "wait_seconds": wait }),
                )
                .await;
            if let Some(waiting) = waiting {
                waiting.finish_and_clear();
            }
            let answer = answer?;
            if output.json {
                print_json(&answer.body);
                return Ok(());
            }
            let command = &answer.body;
            print_fields(&[
                ("command", cell(&command["command_id"])),
                ("status", cell(&command["status"])),
                ("answered", cell(&command["answered_at"])),
                ("response", cell(&command["response"])),
            ]);
            if answer.status == StatusCode::ACCEPTED {
                eprintln!("The device has not answered yet.");
            }
        }
        DevicesCommand::Events {
            device_id,
            limit,
            topic,
            follow,
            output,
        } => events(&mut api, &device_id, limit, topic, follow, output.json).await?,
    }
    Ok(())
}

async fn settings(api: &mut Api, command: SettingsCommand) -> Result<(), Failure> {
    match command {
        SettingsCommand::Get { device_id, output } => {
            let state = api
                .get(&format!("{}/state", device_path(&device_id)?))
                .await?;
            if output.json {
                print_json(&state);
                return Ok(());
            }
            let desired = &state["desired"]["settings"];
            let reported = &state["reported"]["state"];
            let mut keys: Vec<&String> = object(desired)
                .keys()
                .chain(object(reported).keys())
                .collect();
            keys.sort();
            keys.dedup();
            let rows: Vec<Vec<String>> = keys
                .into_iter()
                .map(|key| {
                    vec![
                        key.clone(),
                        cell(&desired[key]),
                        cell(&reported[key]),
                        if state["delta"].get(key).is_some() {
                            "pending".to_owned()
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            print_table(&["SETTING", "DESIRED", "REPORTED", ""], &rows);
        }
        SettingsCommand::Set {
            device_id,
            changes,
            output,
        } => {
            let changes = parse_changes(&changes)?;
            let path = format!("{}/state", device_path(&device_id)?);
            let mut attempts = 0;
            let written = loop {
                attempts += 1;
                let read = api.call(Method::GET, &path, None, &[]).await?;
                let version = read
                    .headers
                    .get("etag")
                    .and_then(|value| value.to_str().ok())
                    .ok_or_else(|| Failure::Failed(anyhow!("the state came without its version")))?
                    .to_owned();
                let mut desired = object(&read.body["desired"]["settings"]).clone();
                desired.extend(changes.clone());
                let response = api
                    .send(
                        Method::PUT,
                        &format!("{path}/desired"),
                        Some(&Value::Object(desired)),
                        &[("If-Match", &version)],
                    )
                    .await?;
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if status == StatusCode::PRECONDITION_FAILED && attempts < SETTINGS_ATTEMPTS {
                    // Someone changed the settings since they were read: apply the change to theirs.
                    continue;
                }
                if !status.is_success() {
                    return Err(refusal(status, &body));
                }
                break body;
            };
            if output.json {
                print_json(&written);
                return Ok(());
            }
            println!(
                "Desired settings of {device_id} are version {}",
                cell(&written["version"])
            );
        }
    }
    Ok(())
}

/// `KEY=VALUE` pairs: the value as JSON when it reads as JSON (`40`, `true`, `"x"`, `[1]`),
/// else as text.
fn parse_changes(changes: &[String]) -> Result<Map<String, Value>, Failure> {
    let mut parsed = Map::new();
    for change in changes {
        let (key, value) = change
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .ok_or_else(|| Failure::Input(anyhow!("{change:?} is not KEY=VALUE")))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        parsed.insert(key.to_owned(), value);
    }
    Ok(parsed)
}

async fn events(
    api: &mut Api,
    device_id: &str,
    limit: u32,
    topic: Option<String>,
    follow: bool,
    json_output: bool,
) -> Result<(), Failure> {
    let base = format!("{}/events", device_path(device_id)?);
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(topic) = &topic {
        query.append_pair("topic", topic);
    }
    let filters = query.finish();
    let page = api
        .get(&format!(
            "{base}?order=newest&limit={}&{filters}",
            limit.clamp(1, 1000)
        ))
        .await?;
    let mut listed = items(&page, "events").to_vec();
    // Printed oldest first, so that what --follow adds comes below.
    listed.reverse();
    if json_output && !follow {
        print_json(&page);
        return Ok(());
    }
    if !json_output {
        println!("{:<29}  {:<20}  PAYLOAD", "RECEIVED", "TOPIC");
    }
    let mut last_id = None;
    for event in &listed {
        print_event(event, json_output);
    }
    if !follow {
        return Ok(());
    }
    // The stream ends when the access token would; it is opened again, after the last event.
    loop {
        let mut headers = Vec::new();
        if let Some(id) = &last_id {
            headers.push(("Last-Event-ID", String::as_str(id)));
        }
        let mut response = api
            .send(
                Method::GET,
                &format!("{base}/live?{filters}"),
                None,
                &headers,
            )
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            return Err(refusal(status, &body));
        }
        let mut pending = String::new();
        let mut id = None;
        while let Some(chunk) = response.chunk().await.context("the event stream broke")? {
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                let line = line.trim_end_matches(['\r', '\n']);
                if let Some(value) = line.strip_prefix("id:") {
                    id = Some(value.trim().to_owned());
                } else if let Some(data) = line.strip_prefix("data:") {
                    if let Ok(event) = serde_json::from_str::<Value>(data.trim()) {
                        print_event(&event, json_output);
                    }
                } else if line.is_empty() && id.is_some() {
                    last_id = id.take();
                }
            }
        }
    }
}

fn print_event(event: &Value, json_output: bool) {
    if json_output {
        println!("{event}");
        return;
    }
    let payload = match &event["payload"] {
        Value::Null => format!(
            "({} bytes, binary)",
            cell(&event["payload_base64"]).len() * 3 / 4
        ),
        payload => cell(payload),
    };
    println!(
        "{:<29}  {:<20}  {}",
        cell(&event["received_at"]),
        cell(&event["topic"]),
        shorten(&payload, 100)
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

pub(crate) async fn grants(command: GrantsCommand) -> Result<(), Failure> {
    let mut api = Api::open()?;
    match command {
        GrantsCommand::Create {
            device_id,
            email,
            scopes,
            expires_in,
            output,
        } => {
            let seconds = parse_duration(&expires_in)?;
            let answer = api
                .post(
                    &format!("{}/grants", device_path(&device_id)?),
                    &json!({ "email": email, "scopes": scopes, "expires_in_seconds": seconds }),
                )
                .await?;
            if output.json {
                print_json(&answer.body);
                return Ok(());
            }
            println!(
                "Granted {} on {device_id} to {email} until {} (grant {})",
                scopes.join(", "),
                cell(&answer.body["expires_at"]),
                cell(&answer.body["grant_id"])
            );
        }
        GrantsCommand::List { device_id, output } => {
            let answer = api
                .get(&format!("{}/grants", device_path(&device_id)?))
                .await?;
            if output.json {
                print_json(&answer);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items(&answer, "grants")
                .iter()
                .map(|grant| {
                    vec![
                        cell(&grant["grant_id"]),
                        cell(&grant["grantee"]["email"]),
                        permissions(&grant["scopes"]),
                        cell(&grant["expires_at"]),
                        if grant["active"] == true {
                            "active".to_owned()
                        } else if grant["revoked_at"].is_null() {
                            "expired".to_owned()
                        } else {
                            "revoked".to_owned()
                        },
                    ]
                })
                .collect();
            print_table(
                &["GRANT", "TECHNICIAN", "SCOPES", "EXPIRES", "STATE"],
                &rows,
            );
        }
        GrantsCommand::Revoke {
            device_id,
            grant_id,
        } => {
            let path = format!(
                "{}/grants/{}",
                device_path(&device_id)?,
                segment(&grant_id)?
            );
            api.call(Method::DELETE, &path, None, &[]).await?;
            println!("Revoked grant {grant_id} on {device_id}");
        }
    }
    Ok(())
}

/// `warden audit log`: a device's access log for its owner, or the journal for an admin.
pub(crate) async fn audit_log(
    device: Option<String>,
    limit: u32,
    json_output: bool,
) -> Result<(), Failure> {
    let mut api = Api::open()?;
    let limit = limit.clamp(1, 500);
    let path = match &device {
        Some(device_id) => format!("{}/access-log?limit={limit}", device_path(device_id)?),
        None => format!("/api/v1/admin/audit?limit={limit}"),
    };
    let answer = api.get(&path).await?;
    if json_output {
        print_json(&answer);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items(&answer, "entries")
        .iter()
        .map(|entry| {
            let actor = &entry["actor"];
            let who = match actor["email"].as_str() {
                Some(email) => email.to_owned(),
                None => format!("{} {}", cell(&actor["kind"]), cell(&actor["id"])),
            };
            vec![
                cell(&entry["at"]),
                who,
                cell(&entry["action"]),
                cell(&entry["outcome"]),
                shorten(&cell(&entry["detail"]), 80),
            ]
        })
        .collect();
    print_table(&["AT", "WHO", "ACTION", "OUTCOME", "DETAIL"], &rows);
    Ok(())
}

/// `/api/v1/devices/{id}` for a device id as typed, refused when it cannot be a path segment.
fn device_path(device_id: &str) -> Result<String, Failure> {
    Ok(format!("/api/v1/devices/{}", segment(device_id)?))
}

fn segment(text: &str) -> Result<&str, Failure> {
    let fine = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(text)
    } else {
        Err(Failure::Input(anyhow!("{text:?} is not an id")))
    }
}

/// `90m`, `8h`, `3d`, `45s`, or plain seconds; at most 90 days.
fn parse_duration(text: &str) -> Result<u64, Failure> {
    let bad = || Failure::Input(anyhow!("{text:?} is not a duration such as 90m, 8h or 3d"));
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let count: u64 = number.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let seconds = count.checked_mul(unit).ok_or_else(bad)?;
    if seconds == 0 || seconds > MAX_GRANT_SECONDS {
        return Err(Failure::Input(anyhow!(
            "a grant lasts from one second to 90 days, not {text}"
        )));
    }
    Ok(seconds)
}

fn items<'a>(answer: &'a Value, name: &str) -> &'a [Value] {
    answer[name].as_array().map_or(&[], Vec::as_slice)
}

fn object(value: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    value.as_object().unwrap_or(&EMPTY)
}

fn permissions(value: &Value) -> String {
    value
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_changes_read_as_documented() {
        assert_eq!(parse_duration("90m").ok(), Some(5_400));
        assert_eq!(parse_duration("8h").ok(), Some(28_800));
        assert_eq!(parse_duration("3d").ok(), Some(259_200));
        assert_eq!(parse_duration("120").ok(), Some(120));
        for bad in ["", "0s", "91d", "2w", "h", "-5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let changes = parse_changes(&[
            "temperature=40".to_owned(),
            "mode=eco".to_owned(),
            "quiet=true".to_owned(),
            "label=\"40\"".to_owned(),
        ])
        .unwrap();
        assert_eq!(
            Value::Object(changes),
            json!({"temperature": 40, "mode": "eco", "quiet": true, "label": "40"})
        );
        assert!(parse_changes(&["=5".to_owned()]).is_err());
        assert!(parse_changes(&["novalue".to_owned()]).is_err());
        assert!(segment("dev/../x").is_err());
    }
}
