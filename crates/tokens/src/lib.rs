//! Signing keys and JSON Web Tokens.
//!
//! [`keys`] holds the key timeline: a new key is published in the JWKS before it signs anything,
//! the newest usable key signs, and a superseded key stays published until every token it signed
//! has expired; retiring a key (after a compromise) unpublishes it at once. [`jwt`] issues and
//! verifies access tokens in the RFC 9068 profile (ES256, `kid` in the header, `typ: at+jwt`),
//! judging time by the caller's clock, not the system's. [`opaque`] makes and checks the random
//! tokens that are not JWTs (sessions, codes, refresh tokens).

pub mod jwt;
pub mod keyed;
pub mod keys;
pub mod opaque;
