//! Device certificates issued per second on one core from CSRs — the request's checks (proof of
//! possession included), the signature, and the inventory row committed to SQLite — against the
//! bound the two signature operations alone set (one P-256 verification of the request, one P-256
//! signature of the certificate, timed with ring directly in the same run). Two ways: one by one,
//! each row its own durable commit (the renewal endpoint, `certs issue`), and in batches of
//! `BATCH` with one commit each (`certs issue-batch`, a factory line).
//! Run: `taskset -c 0 cargo bench -p server --bench certificates` (one core, as the goal asks).

use std::time::Instant;

use model::{DeviceId, Timestamp};
use pki::{Authority, CheckedCsr};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use store::{DatabaseUrl, Store, StoreOptions};

const ROUNDS: u32 = 2_000;
const BATCH: usize = 100;
const YEAR: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let root = pki::create_root(now)?;
    let intermediate = pki::issue_intermediate(&root, now)?;
    let authority = Authority::new(&root.certificate_pem, &intermediate)?;
    let device = DeviceId::parse("bench-device")?;
    let device_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, device.as_str());
    let csr = params.serialize_request(&device_key)?.der().to_vec();

    let dir = tempfile::tempdir()?;
    let store = Store::open(
        &DatabaseUrl::sqlite_file(&dir.path().join("bench.db")),
        &StoreOptions::default(),
    )
    .await?;

    // The bound: one verification and one signature, over messages of the sizes involved.
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| "key generation failed")?;
    let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| "key parsing failed")?;
    let verifier = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, signer.public_key().as_ref());
    let request_body = vec![7u8; csr.len()];
    let request_signature = signer
        .sign(&rng, &request_body)
        .map_err(|_| "signing failed")?;
    let certificate_body = vec![7u8; 400];
    let started = Instant::now();
    for _ in 0..ROUNDS {
        verifier
            .verify(&request_body, request_signature.as_ref())
            .map_err(|_| "verification failed")?;
        std::hint::black_box(
            signer
                .sign(&rng, &certificate_body)
                .map_err(|_| "signing failed")?,
        );
    }
    let bound = f64::from(ROUNDS) / started.elapsed().as_secs_f64();

    // Warden's whole path, one by one, as the renewal endpoint and `certs issue` run it.
    let single_rounds = ROUNDS / 10;
    let started = Instant::now();
    for _ in 0..single_rounds {
        let checked = CheckedCsr::check(&csr, &device)?;
        let issued = authority.issue_device(&checked, YEAR, now)?;
        store.certificates().insert(&issued).await?;
    }
    let single = f64::from(single_rounds) / started.elapsed().as_secs_f64();

    // The same in batches, as `certs issue-batch` runs it.
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for _ in 0..ROUNDS {
        let checked = CheckedCsr::check(&csr, &device)?;
        batch.push(authority.issue_device(&checked, YEAR, now)?);
        if batch.len() == BATCH {
            store.certificates().insert_all(&batch).await?;
            batch.clear();
        }
    }
    store.certificates().insert_all(&batch).await?;
    let batched = f64::from(ROUNDS) / started.elapsed().as_secs_f64();

    println!("signature bound (verify + sign, ring):       {bound:.0}/s");
    println!(
        "issued one by one, a durable commit each:   {single:.0}/s, ratio {:.2}",
        single / bound
    );
    println!(
        "issued in batches of {BATCH}, one commit each: {batched:.0}/s, ratio {:.2} (goal >= 0.5)",
        batched / bound
    );
    Ok(())
}
