//! An open-loop load generator for the benchmarks: sends one request every 1/RATE seconds, each on
//! its own task, whatever the answers take, and measures each latency from the moment the request
//! was due (so a slow server cannot hide its queue by slowing the sender down, the "coordinated
//! omission" of closed-loop tools). Prints the count, the status codes and latency percentiles.
//!
//! `paced-load URL RATE SECONDS CA_FILE BODY [HEADER:VALUE]…` (a POST of BODY, form-encoded);
//! `localhost` in URL is resolved to 127.0.0.1. Used by `bench/oauth.sh`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, rate, seconds, ca_file, body, headers @ ..] = args.as_slice() else {
        return Err("usage: paced-load URL RATE SECONDS CA_FILE BODY [HEADER:VALUE]…".into());
    };
    let rate: f64 = rate.parse()?;
    let seconds: f64 = seconds.parse()?;
    if rate <= 0.0 || seconds <= 0.0 {
        return Err("RATE and SECONDS must be positive".into());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(url, rate, seconds, ca_file, body, headers))
}

async fn run(
    url: &str,
    rate: f64,
    seconds: f64,
    ca_file: &str,
    body: &str,
    headers: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let port = reqwest::Url::parse(url)?.port().unwrap_or(443);
    let mut header_map = reqwest::header::HeaderMap::new();
    header_map.insert(
        reqwest::header::CONTENT_TYPE,
        "application/x-www-form-urlencoded".parse()?,
    );
    for header in headers {
        let (name, value) = header.split_once(':').ok_or("headers are NAME:VALUE")?;
        header_map.insert(
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())?,
            value.trim().parse()?,
        );
    }
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca_file)?)?)
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(header_map)
        .build()?;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let count = (rate * seconds).round() as u64;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..count {
        let due = started + interval.mul_f64(index as f64);
        tokio::time::sleep_until(due.into()).await;
        let request = client.post(url).body(body.to_owned());
        tasks.spawn(async move {
            let status = match request.send().await {
                Ok(response) => response.status().as_u16().to_string(),
                Err(error) => format!("error ({error})"),
            };
            (status, due.elapsed())
        });
    }
    let mut statuses = BTreeMap::<String, u64>::new();
    let mut latencies = Vec::with_capacity(tasks.len());
    while let Some(outcome) = tasks.join_next().await {
        let (status, latency) = outcome?;
        *statuses.entry(status).or_default() += 1;
        latencies.push(latency);
    }
    latencies.sort();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1000.0
    };
    println!(
        "sent {count} at {rate:.1}/s over {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("statuses: {statuses:?}");
    println!(
        "latency ms: p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        percentile(1.0)
    );
    Ok(())
}
