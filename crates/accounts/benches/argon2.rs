//! The cost of Argon2id at Warden's parameters: the bound on logins per second that
//! `bench/oauth.sh` compares the login endpoint with. The bound is measured with every core
//! hashing at once, as they do under a login flood: Argon2 is memory-hard, so two hashes running
//! side by side share caches and memory bandwidth and each takes longer than one alone.
//! Run: `cargo bench -p accounts --bench argon2`.

use std::time::Instant;

use accounts::password::{HashCost, Hasher, Password};

const ROUNDS_PER_CORE: u32 = 30;

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
    let verify_rounds = |rounds: u32| {
        for _ in 0..rounds {
            std::hint::black_box(hasher.verify(&password, &stored));
        }
    };

    let started = Instant::now();
    verify_rounds(ROUNDS_PER_CORE);
    let alone = started.elapsed().as_secs_f64() / f64::from(ROUNDS_PER_CORE);

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| verify_rounds(ROUNDS_PER_CORE));
        }
    });
    let total = f64::from(ROUNDS_PER_CORE) * cores as f64;
    let bound = total / started.elapsed().as_secs_f64();
    println!(
        "argon2id m=19456 t=2 p=1: {:.2} ms per verification alone, {:.2} ms with {cores} at once",
        alone * 1000.0,
        cores as f64 / bound * 1000.0
    );
    println!(
        "hash bound: {bound:.1} logins/s on {cores} cores (alone-time bound: {:.1})",
        cores as f64 / alone
    );
}
