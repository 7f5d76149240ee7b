//! The cost of one Argon2id hash at Warden's parameters: the bound on logins per second
//! (cores / time per hash) that `bench/oauth.sh` compares the login endpoint with.
//! Run: `cargo bench -p accounts --bench argon2`.

use std::time::Instant;

use accounts::password::{HashCost, Hasher, Password};

fn main() {
    let hasher = match Hasher::new(HashCost::OWASP) {
        Ok(hasher) => hasher,
        Err(error) => {
            eprintln!("cannot set up the hasher: {error}");
            std::process::exit(1);
        }
    };
    let password = Password::new("correct horse battery staple");
    let Ok(stored) = hasher.hash(&password) else {
        eprintln!("hashing failed");
        std::process::exit(1);
    };
    let rounds = 30;
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(hasher.verify(&password, &stored));
    }
    let per_hash = started.elapsed().as_secs_f64() / f64::from(rounds);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "argon2id m=19456 t=2 p=1: {:.2} ms per verification",
        per_hash * 1000.0
    );
    println!(
        "hash bound: {:.1} logins/s on {cores} cores",
        cores as f64 / per_hash
    );
}
