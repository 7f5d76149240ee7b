//! The storage conformance suite: every check runs against SQLite and against a real PostgreSQL
//! server, through the one `Store` interface.

use model::{Email, FailedAttempts, PasswordHash, Role, Timestamp, UserId};
use store::{
    Counted, DatabaseUrl, LATEST_SCHEMA_VERSION, NewUser, Store, StoreError, StoreOptions,
};
use testkit::postgres::Cluster;

const BCRYPT: &str = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";

/// A fresh, empty database of the given backend; the guard keeps a SQLite file's directory alive.
async fn fresh(backend: &str) -> (DatabaseUrl, Option<tempfile::TempDir>) {
    match backend {
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            (
                DatabaseUrl::sqlite_file(&dir.path().join("warden.db")),
                Some(dir),
            )
        }
        _ => (Cluster::shared().create_database().await, None),
    }
}

fn user(email: &str, role: Role, at: i64) -> NewUser {
    NewUser {
        id: UserId::generate(),
        email: Email::parse(email).unwrap(),
        password_hash: PasswordHash::parse(BCRYPT).unwrap(),
        role,
        created_at: Timestamp::from_unix_millis(at),
    }
}

async fn open(url: &DatabaseUrl) -> Store {
    Store::open(url, &StoreOptions::default()).await.unwrap()
}

async fn migrations_bring_an_empty_database_to_the_latest_schema_once(backend: &str) {
    let (url, _guard) = fresh(backend).await;
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 0);
    let report = store.migrate().await.unwrap();
    assert_eq!(
        (report.from_version, report.to_version),
        (0, LATEST_SCHEMA_VERSION)
    );
    let again = store.migrate().await.unwrap();
    assert_eq!(
        (again.from_version, again.to_version),
        (LATEST_SCHEMA_VERSION, LATEST_SCHEMA_VERSION)
    );
    assert!(store.check_integrity().await.unwrap().is_ok());
}

async fn concurrent_starts_migrate_exactly_once(backend: &str) {
    let (url, _guard) = fresh(backend).await;
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::open(&url, &StoreOptions::default()).await })
        })
        .collect();
    for start in starts {
        let store = start.await.unwrap().unwrap();
        assert_eq!(store.schema_version().await.unwrap(), LATEST_SCHEMA_VERSION);
    }
}

async fn a_newer_schema_is_refused_with_a_clear_message(backend: &str) {
    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    // What a newer Warden would have left behind.
    let future = LATEST_SCHEMA_VERSION + 1;
    sqlx_execute(
        &url,
        &format!(
            "INSERT INTO warden_schema (version, name, applied_at) VALUES ({future}, 'future', 0)"
        ),
    )
    .await;
    store.close().await;
    let error = Store::open(&url, &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::SchemaTooNew { found, .. } if found == future),
        "{error}"
    );
    assert!(
        error.to_string().contains("newer than this Warden knows"),
        "{error}"
    );
}

async fn users_are_created_found_and_listed_in_pages(backend: &str) {
    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    let users = store.users();
    let ada = user("ada@example.com", Role::Customer, 1_000);
    users.insert(&ada).await.unwrap();
    for (index, email) in ["cy@example.com", "bo@example.com", "di@example.com"]
        .iter()
        .enumerate()
    {
        users
            .insert(&user(email, Role::Technician, 2_000 + index as i64))
            .await
            .unwrap();
    }
    let found = users.by_email(&ada.email).await.unwrap().unwrap();
    assert_eq!(found.id, ada.id);
    assert_eq!(found.password_hash, ada.password_hash);
    assert_eq!(found.role, Role::Customer);
    assert_eq!(
        (found.created_at, found.updated_at),
        (ada.created_at, ada.created_at)
    );
    assert_eq!(users.by_id(ada.id).await.unwrap(), Some(found));
    assert_eq!(users.by_id(UserId::generate()).await.unwrap(), None);
    assert_eq!(
        users
            .by_email(&Email::parse("nobody@example.com").unwrap())
            .await
            .unwrap(),
        None
    );
    assert_eq!(users.count().await.unwrap(), 4);

    let first = users.list(None, 3).await.unwrap();
    let emails: Vec<&str> = first.iter().map(|u| u.email.as_str()).collect();
    assert_eq!(
        emails,
        ["ada@example.com", "bo@example.com", "cy@example.com"]
    );
    let rest = users.list(Some(&first[2].email), 3).await.unwrap();
    assert_eq!(
        rest.iter().map(|u| u.email.as_str()).collect::<Vec<_>>(),
        ["di@example.com"]
    );
    assert!(
        users
            .list(Some(&rest[0].email), 3)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_taken_email_is_a_conflict_and_changes_nothing(backend: &str) {
    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    let original = user("ada@example.com", Role::Customer, 1_000);
    store.users().insert(&original).await.unwrap();
    let intruder = user("ADA@example.com", Role::Admin, 9_000);
    let error = store.users().insert(&intruder).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error}");
    let stored = store
        .users()
        .by_email(&original.email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.id, stored.role), (original.id, Role::Customer));
    assert_eq!(store.users().count().await.unwrap(), 1);
}

async fn insert_missing_skips_existing_accounts_in_one_transaction(backend: &str) {
    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    store
        .users()
        .insert(&user("b@example.com", Role::Admin, 1))
        .await
        .unwrap();
    let batch = vec![
        user("a@example.com", Role::Customer, 2),
        user("b@example.com", Role::Customer, 2),
        user("c@example.com", Role::Customer, 2),
    ];
    assert_eq!(store.users().insert_missing(&batch).await.unwrap(), 2);
    assert_eq!(store.users().insert_missing(&batch).await.unwrap(), 0);
    assert_eq!(store.users().count().await.unwrap(), 3);
    let kept = store
        .users()
        .by_email(&batch[1].email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.role,
        Role::Admin,
        "an existing account is left as it was"
    );
}

async fn roles_change_and_touch_updated_at(backend: &str) {
    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    let tech = user("tech@example.com", Role::Customer, 1_000);
    store.users().insert(&tech).await.unwrap();
    let later = Timestamp::from_unix_millis(5_000);
    assert!(
        store
            .users()
            .set_role(tech.id, Role::Technician, later)
            .await
            .unwrap()
    );
    let stored = store.users().by_id(tech.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.role, stored.updated_at, stored.created_at),
        (Role::Technician, later, tech.created_at)
    );
    assert!(
        !store
            .users()
            .set_role(UserId::generate(), Role::Admin, later)
            .await
            .unwrap()
    );
}

async fn values_survive_a_reopen_byte_for_byte(backend: &str) {
    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    let argon = PasswordHash::parse(
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A",
    )
    .unwrap();
    let mut unicode = user("zoë@bücher.example", Role::Customer, -1);
    unicode.password_hash = argon.clone();
    store.users().insert(&unicode).await.unwrap();
    store.close().await;
    let reopened = open(&url).await;
    let stored = reopened.users().by_id(unicode.id).await.unwrap().unwrap();
    assert_eq!(stored.email.as_str(), "zoë@bücher.example");
    assert_eq!(stored.password_hash, argon);
    assert_eq!(stored.created_at.unix_millis(), -1);
}

async fn ping_and_integrity_check_answer_on_a_healthy_database(backend: &str) {
    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    store.ping().await.unwrap();
    let report = store.check_integrity().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

async fn purge_removes_only_what_has_expired(backend: &str) {
    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    let ada = user("ada@example.com", Role::Customer, 0);
    store.users().insert(&ada).await.unwrap();
    let at = Timestamp::from_unix_millis;
    store
        .sessions()
        .insert("expired", ada.id, at(0), at(1_000), false)
        .await
        .unwrap();
    store
        .sessions()
        .insert("live", ada.id, at(0), at(10_000), false)
        .await
        .unwrap();
    let stale = FailedAttempts {
        failures: 3,
        last_failure: Some(at(100)),
        locked_until: None,
    };
    let locked = FailedAttempts {
        failures: 9,
        last_failure: Some(at(100)),
        locked_until: Some(at(50_000)),
    };
    let recent = FailedAttempts {
        failures: 1,
        last_failure: Some(at(4_500)),
        locked_until: None,
    };
    store
        .login_throttle()
        .put("account:stale", &stale)
        .await
        .unwrap();
    store
        .login_throttle()
        .put("account:locked", &locked)
        .await
        .unwrap();
    store
        .login_throttle()
        .put("account:recent", &recent)
        .await
        .unwrap();

    let report = store.purge_expired(at(5_000), 1_000).await.unwrap();
    assert_eq!((report.sessions, report.login_throttles), (1, 1));
    assert!(
        store
            .sessions()
            .user("expired", at(0))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .sessions()
            .user("live", at(5_000))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.login_throttle().get("account:stale").await.unwrap(),
        FailedAttempts::default()
    );
    assert_eq!(
        store.login_throttle().get("account:locked").await.unwrap(),
        locked
    );
    assert_eq!(
        store.login_throttle().get("account:recent").await.unwrap(),
        recent
    );
    assert_eq!(
        store.purge_expired(at(5_000), 1_000).await.unwrap().total(),
        0
    );
}

/// Runs one SQL statement outside the store, as an operator (or a newer Warden) would.
async fn the_ca_inventory_and_revocation_counters_work(backend: &str) {
    use pki::{CaRole, CertificateKind, IssuedCertificate, RevocationReason};
    use store::StoredCa;

    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    let certificates = store.certificates();
    let ca = |name: &str| StoredCa {
        certificate_pem: format!("{name} certificate"),
        sealed_key: Some(format!("{name} sealed key")),
    };
    let at = Timestamp::from_unix_millis;
    assert!(
        certificates
            .create_ca(&ca("root"), &ca("intermediate"), at(1))
            .await
            .unwrap()
    );
    assert!(
        !certificates
            .create_ca(&ca("other root"), &ca("other"), at(2))
            .await
            .unwrap(),
        "a second CA is never stored over the first"
    );
    assert_eq!(
        certificates.ca(CaRole::Root).await.unwrap(),
        Some(ca("root"))
    );
    assert!(certificates.set_ca_key(CaRole::Root, None).await.unwrap());
    assert_eq!(
        certificates
            .ca(CaRole::Root)
            .await
            .unwrap()
            .unwrap()
            .sealed_key,
        None
    );
    certificates
        .replace_ca(CaRole::Intermediate, &ca("new intermediate"), at(3))
        .await
        .unwrap();
    assert_eq!(
        certificates.ca(CaRole::Intermediate).await.unwrap(),
        Some(ca("new intermediate"))
    );

    let issued = |serial: &str, subject: &str, not_after: i64| IssuedCertificate {
        serial: serial.into(),
        kind: CertificateKind::Device,
        subject: subject.into(),
        not_before: at(0),
        not_after: at(not_after),
        certificate_pem: format!("{serial} pem"),
    };
    for certificate in [
        issued("01", "washer-1", 1_000),
        issued("02", "washer-1", 5_000),
        issued("03", "oven-2", 2_000),
        issued("04", "oven-2", 100),
    ] {
        certificates.insert(&certificate).await.unwrap();
    }
    assert!(
        certificates.insert(&issued("01", "x", 1)).await.is_err(),
        "serials are unique"
    );
    let washer = certificates.by_subject("washer-1").await.unwrap();
    assert_eq!(washer.len(), 2);
    let expiring: Vec<String> = certificates
        .expiring(at(500), at(2_500))
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.certificate.serial)
        .collect();
    assert_eq!(
        expiring,
        ["01", "03"],
        "soonest first; expired and later ones left out"
    );
    assert_eq!(
        certificates
            .count_expiring(at(500), at(2_500))
            .await
            .unwrap(),
        2
    );

    assert!(
        certificates
            .revoke("01", RevocationReason::KeyCompromise, at(600))
            .await
            .unwrap()
    );
    assert!(
        !certificates
            .revoke("01", RevocationReason::Superseded, at(700))
            .await
            .unwrap()
    );
    assert!(
        !certificates
            .revoke("ff", RevocationReason::Superseded, at(700))
            .await
            .unwrap()
    );
    assert_eq!(
        certificates
            .revoke_subject("oven-2", RevocationReason::CessationOfOperation, at(800))
            .await
            .unwrap(),
        2
    );
    let revoked: Vec<String> = certificates
        .revoked(at(900))
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.serial)
        .collect();
    assert_eq!(revoked, ["01", "03"], "04 has expired and leaves the list");
    let record = certificates.by_serial("01").await.unwrap().unwrap();
    assert_eq!(
        record.revoked,
        Some((at(600), RevocationReason::KeyCompromise))
    );
    let first = certificates.next_crl_number().await.unwrap();
    assert_eq!(certificates.next_crl_number().await.unwrap(), first + 1);

    let grants = store.grants();
    let epoch = grants.revocation_epoch().await.unwrap();
    grants.revoke_grant("grant-1", at(1)).await.unwrap();
    grants
        .revoke_access_token("jti-1", at(10_000))
        .await
        .unwrap();
    assert_eq!(grants.revocation_epoch().await.unwrap(), epoch + 2);
}

async fn sqlx_execute(url: &DatabaseUrl, sql: &str) {
    sqlx_try(url, sql).await.unwrap();
}

/// Runs `sql` on the database directly, as someone with access to it (not through the store).
pub(crate) async fn sqlx_try(url: &DatabaseUrl, sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::{Connection, Executor};
    match url {
        DatabaseUrl::Sqlite(path) => {
            let mut connection =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?;
            connection.execute(sql).await?;
        }
        DatabaseUrl::Postgres(url) => {
            let mut connection = sqlx::PgConnection::connect(url).await?;
            connection.execute(sql).await?;
        }
    }
    Ok(())
}

/// A technician's read of `device` at `at` ms.
fn read_by(technician: &str, device: &str, at: i64) -> audit::Record {
    audit::Record::new(
        Timestamp::from_unix_millis(at),
        audit::Actor::User {
            id: technician.to_owned(),
            email: None,
        },
        audit::Action::DeviceRead,
        audit::Target::new("device", device),
    )
    .device(device)
}

async fn the_audit_journal_chains_appends_signs_checkpoints_and_removes_whole_segments(
    backend: &str,
) {
    let at = Timestamp::from_unix_millis;
    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    let kek = pki::KeyEncryptionKey::from_bytes(&[7; 32]).unwrap();
    let key = server::audit::checkpoint_key(&store, &kek, at(0))
        .await
        .unwrap();
    let again = server::audit::checkpoint_key(&store, &kek, at(1))
        .await
        .unwrap();
    assert_eq!(
        again.id(),
        key.id(),
        "the stored key is used, not a new one"
    );

    // Appends from many connections at once chain one after the other.
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for batch in 0..5 {
                    let records = [
                        read_by(&format!("tech{writer}"), "dev-a", 100 + batch),
                        read_by(&format!("tech{writer}"), "dev-b", 100 + batch),
                    ];
                    store.audit().append(&records).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let journal = store.audit();
    assert_eq!(journal.head().await.unwrap().seq, 80);
    let summary = server::audit::verify(&store, &kek).await.unwrap().unwrap();
    assert_eq!(
        (summary.first_seq, summary.last_seq, summary.entries),
        (1, 80, 80)
    );

    // Filters, order and cursor.
    let query = |change: &dyn Fn(&mut audit::Query)| {
        let mut query = audit::Query {
            limit: 1000,
            ..audit::Query::default()
        };
        change(&mut query);
        query
    };
    let of_a = journal
        .query(&query(&|q| q.device = Some("dev-a".into())))
        .await
        .unwrap();
    assert_eq!(of_a.len(), 40);
    assert!(of_a.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    let by_tech3 = journal
        .query(&query(&|q| q.actor = Some(("user".into(), "tech3".into()))))
        .await
        .unwrap();
    assert_eq!(by_tech3.len(), 10);
    let newest = journal
        .query(&query(&|q| {
            q.newest_first = true;
            q.limit = 3;
            q.after = Some(78);
        }))
        .await
        .unwrap();
    assert_eq!(
        newest.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [77, 76, 75]
    );
    let early = journal
        .query(&query(&|q| {
            q.from = Some(at(101));
            q.to = Some(at(102));
            q.action = Some("device.read".into());
        }))
        .await
        .unwrap();
    assert_eq!(early.len(), 16);
    assert!(
        journal
            .query(&query(&|q| q.action = Some("grant.create".into())))
            .await
            .unwrap()
            .is_empty()
    );

    // Checkpoints: one per new head, none without new entries.
    let first = journal.checkpoint(&key, at(1_000)).await.unwrap().unwrap();
    assert_eq!((first.number, first.first_seq, first.last_seq), (1, 1, 80));
    assert!(journal.checkpoint(&key, at(1_001)).await.unwrap().is_none());
    journal
        .append(&[read_by("tech9", "dev-a", 1_500)])
        .await
        .unwrap();
    let second = journal.checkpoint(&key, at(2_000)).await.unwrap().unwrap();
    assert_eq!((second.first_seq, second.last_seq), (81, 81));
    journal
        .append(&[read_by("tech9", "dev-a", 2_500)])
        .await
        .unwrap();

    // Entries are never updated, and removed only with their segment by retention.
    for refused in [
        "UPDATE audit_entries SET outcome = 'denied' WHERE seq = 5",
        "DELETE FROM audit_entries WHERE seq = 5",
    ] {
        let error = sqlx_try(&url, refused).await.unwrap_err().to_string();
        assert!(error.contains("audit entries"), "{refused}: {error}");
    }

    // Retention removes the first segment in bounded batches and keeps its checkpoint; the rest
    // verifies from it. The open segment after the last checkpoint stays.
    let removed = journal
        .remove_segments_before(at(1_500), at(3_000), 7)
        .await
        .unwrap();
    assert_eq!(removed, 80);
    let summary = server::audit::verify(&store, &kek).await.unwrap().unwrap();
    assert_eq!(
        (
            summary.pruned_segments,
            summary.first_seq,
            summary.entries,
            summary.unsigned_entries
        ),
        (1, 81, 2, 1)
    );
    let removed = journal
        .remove_segments_before(at(10_000), at(10_000), 7)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(journal.entries_after(0, 10).await.unwrap().len(), 1);
    assert!(server::audit::verify(&store, &kek).await.unwrap().is_ok());

    // The key does not open with another key-encryption key.
    let other = pki::KeyEncryptionKey::from_bytes(&[8; 32]).unwrap();
    assert!(server::audit::verify(&store, &other).await.is_err());
}

/// An event from `device` on its `tail` topic, received at `at` ms, with payload `payload`.
fn event(device: &str, tail: &str, at: i64, payload: &str) -> events::Event {
    events::Event::received(
        model::DeviceId::parse(device).unwrap(),
        format!("devices/{device}/{tail}"),
        payload.as_bytes().to_vec(),
        events::MessageProperties::default(),
        Timestamp::from_unix_millis(at),
    )
}

async fn events_are_stored_once_paged_filtered_and_expired(backend: &str) {
    use events::{Body, EventQuery, FieldFilter, Order, TopicSelector};
    use store::RetentionScope;

    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    let events = store.events();
    let mut batch: Vec<events::Event> = (0..10)
        .map(|i| {
            let door = if i % 2 == 0 { "open" } else { "closed" };
            let payload = format!(r#"{{"id":"e{i}","door":"{door}","hot":{},"t":{i}}}"#, i > 6);
            event("oven-1", "events", 1_000 + i, &payload)
        })
        .collect();
    batch.push(event("oven-1", "state/reported", 1_005, r#"{"t":5}"#));
    batch.push(event(
        "oven-1",
        "commands/clean/response",
        1_006,
        r#"{"ok":true}"#,
    ));
    batch.push(event("fridge-1", "events", 1_003, r#"{"id":"e3"}"#));
    // JSON with a NUL, which PostgreSQL's jsonb refuses, does not fail the batch (found by
    // fuzzing).
    batch.push(event("fridge-1", "events", 1_004, r#"{"t":"\u0000"}"#));
    let mut binary = event("oven-1", "events", 1_011, "x");
    binary.body = Body::Bytes(vec![0xff, 0x00, 0x01]);
    batch.push(binary.clone());
    assert_eq!(events.append(&batch).await.unwrap(), 15);
    // A resend of stored messages, and a repeat inside one batch, are skipped.
    let again = vec![batch[0].clone(), batch[1].clone(), batch[1].clone()];
    assert_eq!(events.append(&again).await.unwrap(), 0);
    assert_eq!(events.append(&[]).await.unwrap(), 0);

    let oven = model::DeviceId::parse("oven-1").unwrap();
    let ids = |page: &[store::StoredEvent]| -> Vec<String> {
        page.iter()
            .map(|stored| stored.event.message_id.clone())
            .collect()
    };
    let all = EventQuery::default();
    let newest = events.page(&oven, &all, None, 100).await.unwrap();
    assert_eq!(newest.len(), 13, "the fridge's event is not the oven's");
    assert_eq!(
        newest[0].event, binary,
        "bytes and fields come back as stored"
    );
    assert!(
        newest
            .windows(2)
            .all(|pair| pair[0].event.received_at >= pair[1].event.received_at)
    );

    // Pages of 4, oldest first, joined by cursors, give every event once in order.
    let mut query = EventQuery {
        order: Order::OldestFirst,
        ..EventQuery::default()
    };
    let mut paged = Vec::new();
    loop {
        let page = events.page(&oven, &query, None, 4).await.unwrap();
        paged.extend(page.iter().cloned());
        match page.last() {
            Some(last) if page.len() == 4 => query.after = Some(last.cursor()),
            _ => break,
        }
    }
    let mut expected = ids(&newest);
    expected.reverse();
    assert_eq!(ids(&paged), expected);

    // Time range, topic, JSON members (text, boolean), the reader's start.
    let at = Timestamp::from_unix_millis;
    let ranged = EventQuery {
        from: Some(at(1_002)),
        to: Some(at(1_004)),
        topic: Some(TopicSelector::parse("events").unwrap()),
        ..EventQuery::default()
    };
    assert_eq!(
        ids(&events.page(&oven, &ranged, None, 100).await.unwrap()),
        ["e3", "e2"]
    );
    let commands = EventQuery {
        topic: Some(TopicSelector::parse("commands/#").unwrap()),
        ..EventQuery::default()
    };
    let answers = events.page(&oven, &commands, None, 100).await.unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0].event.topic,
        "devices/oven-1/commands/clean/response"
    );
    let fields = EventQuery {
        fields: vec![
            FieldFilter::new("door", "open").unwrap(),
            FieldFilter::new("hot", "true").unwrap(),
        ],
        ..EventQuery::default()
    };
    assert_eq!(
        ids(&events.page(&oven, &fields, None, 100).await.unwrap()),
        ["e8"]
    );
    let number = EventQuery {
        fields: vec![FieldFilter::new("t", "5").unwrap()],
        ..EventQuery::default()
    };
    assert_eq!(
        events.page(&oven, &number, None, 100).await.unwrap().len(),
        2
    );
    let since = events
        .page(&oven, &all, Some(at(1_009)), 100)
        .await
        .unwrap();
    assert_eq!(ids(&since), [binary.message_id.clone(), "e9".to_owned()]);

    // Retention: a model's own scope, then everyone else's, in bounded batches.
    let model = registry::ModelName::parse("oven-x1").unwrap();
    store
        .devices()
        .create(
            &[registry::NewDevice {
                device_id: oven.clone(),
                model: model.clone(),
                password_hash: "h".into(),
                claim_code_hash: "c".into(),
                created_at: at(0),
            }],
            &[],
        )
        .await
        .unwrap();
    let own = vec![model.as_str().to_owned()];
    let deleted = events
        .delete_received_before(at(1_004), RetentionScope::Model(&own[0]), 2)
        .await
        .unwrap();
    assert_eq!(deleted, 2, "a batch never exceeds its limit");
    assert_eq!(
        events
            .delete_received_before(at(1_004), RetentionScope::AllBut(&own), 100)
            .await
            .unwrap(),
        1,
        "only the fridge's old event is outside the oven's model"
    );
    assert_eq!(
        events
            .delete_received_before(at(1_004), RetentionScope::Model(&own[0]), 100)
            .await
            .unwrap(),
        2
    );
    let left = events.page(&oven, &all, None, 100).await.unwrap();
    assert_eq!(left.len(), 9);
    assert!(
        left.iter()
            .all(|stored| stored.event.received_at >= at(1_004))
    );
    assert!(store.check_integrity().await.unwrap().is_ok());
}

async fn devices_are_tagged_and_selected_and_an_open_update_is_found(backend: &str) {
    use model::DeviceId;
    use registry::{ModelName, NewDevice, Tag};
    use store::Selection;

    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    let at = Timestamp::from_unix_millis;
    let washer = ModelName::parse("washer-w500").unwrap();
    let dryer = ModelName::parse("dryer-d100").unwrap();
    let ids: Vec<DeviceId> = (0..4)
        .map(|i| DeviceId::parse(&format!("device-{i}")).unwrap())
        .collect();
    let new: Vec<NewDevice> = ids
        .iter()
        .enumerate()
        .map(|(i, device_id)| NewDevice {
            device_id: device_id.clone(),
            model: if i < 3 { washer.clone() } else { dryer.clone() },
            password_hash: "h".into(),
            claim_code_hash: format!("c{i}"),
            created_at: at(0),
        })
        .collect();
    let devices = store.devices();
    devices.create(&new, &[]).await.unwrap();
    let beta = Tag::parse("beta").unwrap();
    let eu = Tag::parse("region-eu").unwrap();
    assert!(
        devices
            .set_tags(&ids[1], &[beta.clone(), eu.clone()])
            .await
            .unwrap()
    );
    assert!(
        devices
            .set_tags(&ids[3], std::slice::from_ref(&beta))
            .await
            .unwrap()
    );
    let unknown = DeviceId::parse("device-9").unwrap();
    assert!(
        !devices
            .set_tags(&unknown, std::slice::from_ref(&beta))
            .await
            .unwrap()
    );
    assert_eq!(
        devices.tags(&ids[1]).await.unwrap(),
        [beta.clone(), eu.clone()]
    );
    assert_eq!(
        devices.select(Selection::Tag(&beta), 10).await.unwrap(),
        [ids[1].clone(), ids[3].clone()]
    );
    assert_eq!(
        devices.select(Selection::Model(&washer), 10).await.unwrap(),
        ids[..3]
    );
    assert_eq!(
        devices.select(Selection::Model(&washer), 2).await.unwrap(),
        ids[..2]
    );
    // Replacing drops what is not named again.
    assert!(
        devices
            .set_tags(&ids[1], std::slice::from_ref(&eu))
            .await
            .unwrap()
    );
    assert_eq!(
        devices.select(Selection::Tag(&beta), 10).await.unwrap(),
        [ids[3].clone()]
    );
    assert!(devices.set_tags(&ids[1], &[]).await.unwrap());
    assert!(devices.tags(&ids[1]).await.unwrap().is_empty());

    // The open update of a device is its newest one not finished, with how it was offered.
    let firmware = store.firmware();
    let release = |id: &str, version: &str| store::Release {
        release_id: id.into(),
        model: washer.to_string(),
        version: version.into(),
        size: 1,
        sha256: "00".repeat(32),
        notes: String::new(),
        manifest: "m".into(),
        created_at: at(0),
    };
    firmware
        .insert_release(&release("fw_a", "1.0.0"))
        .await
        .unwrap();
    firmware
        .insert_release(&release("fw_b", "0.9.0"))
        .await
        .unwrap();
    assert_eq!(firmware.open_update(&ids[0]).await.unwrap(), None);
    firmware
        .offer("fw_a", &ids[..1], false, at(10))
        .await
        .unwrap();
    firmware
        .offer("fw_b", &ids[..1], true, at(20))
        .await
        .unwrap();
    let open = firmware.open_update(&ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (open.release_id.as_str(), open.allow_downgrade),
        ("fw_b", true)
    );
    let finished = store::DeviceUpdate {
        state: firmware::OtaState::Failed,
        updated_at: at(30),
        ..open.clone()
    };
    assert!(firmware.advance(&open, &finished).await.unwrap());
    let open = firmware.open_update(&ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (open.release_id.as_str(), open.allow_downgrade),
        ("fw_a", false)
    );
    assert!(store.check_integrity().await.unwrap().is_ok());
}

/// Transactions that read and then write, run side by side, all succeed: none fails with
/// "database is locked" (SQLite cannot upgrade a deferred transaction's stale snapshot, so write
/// transactions take the write lock first). Found by API fuzzing with two workers.
async fn concurrent_read_then_write_transactions_all_succeed(backend: &str) {
    use model::DeviceId;
    use registry::{ModelName, NewDevice, Tag};

    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    let ids: Vec<DeviceId> = (0..4)
        .map(|i| DeviceId::parse(&format!("device-{i}")).unwrap())
        .collect();
    let new: Vec<NewDevice> = ids
        .iter()
        .map(|device_id| NewDevice {
            device_id: device_id.clone(),
            model: ModelName::parse("washer-w500").unwrap(),
            password_hash: "h".into(),
            claim_code_hash: format!("c-{device_id}"),
            created_at: Timestamp::from_unix_millis(0),
        })
        .collect();
    store.devices().create(&new, &[]).await.unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for round in 0..64 {
        let (store, device_id) = (store.clone(), ids[round % ids.len()].clone());
        writers.spawn(async move {
            let tag = Tag::parse(&format!("round-{round}")).unwrap();
            store.devices().set_tags(&device_id, &[tag]).await
        });
    }
    while let Some(result) = writers.join_next().await {
        assert!(result.unwrap().unwrap(), "a device that exists");
    }
    for device_id in &ids {
        assert_eq!(store.devices().tags(device_id).await.unwrap().len(), 1);
    }
}

async fn a_job_lease_has_one_holder_until_it_expires_or_is_released(backend: &str) {
    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    let leases = store.job_leases();
    let at = Timestamp::from_unix_millis;
    assert!(
        leases
            .take("purge", "a", at(1_000), at(11_000))
            .await
            .unwrap()
    );
    assert!(
        !leases
            .take("purge", "b", at(2_000), at(12_000))
            .await
            .unwrap()
    );
    // The holder renews; another job is another lease.
    assert!(
        leases
            .take("purge", "a", at(3_000), at(13_000))
            .await
            .unwrap()
    );
    assert!(
        leases
            .take("rollouts", "b", at(3_000), at(13_000))
            .await
            .unwrap()
    );
    // Until its end the lease is a's; from its end anyone may take it.
    assert!(
        !leases
            .take("purge", "b", at(12_999), at(20_000))
            .await
            .unwrap()
    );
    assert!(
        leases
            .take("purge", "b", at(13_000), at(23_000))
            .await
            .unwrap()
    );
    assert_eq!(
        leases.holder("purge").await.unwrap(),
        Some(("b".to_owned(), at(23_000)))
    );
    // Only the holder can give it up; then it is free at once.
    leases.release("purge", "a").await.unwrap();
    assert!(
        !leases
            .take("purge", "a", at(14_000), at(24_000))
            .await
            .unwrap()
    );
    leases.release("purge", "b").await.unwrap();
    assert_eq!(leases.holder("purge").await.unwrap(), None);
    assert!(
        leases
            .take("purge", "a", at(14_000), at(24_000))
            .await
            .unwrap()
    );

    // Replicas asking at once for a lease nobody has: exactly one gets it.
    let mut askers = tokio::task::JoinSet::new();
    for replica in 0..8 {
        let store = store.clone();
        askers.spawn(async move {
            let holder = format!("replica-{replica}");
            store
                .job_leases()
                .take("race", &holder, at(1_000), at(60_000))
                .await
                .unwrap()
        });
    }
    let granted = askers
        .join_all()
        .await
        .into_iter()
        .filter(|&taken| taken)
        .count();
    assert_eq!(granted, 1);
}

async fn shared_throttle_counters_allow_a_burst_then_one_per_interval(backend: &str) {
    let (url, _guard) = fresh(backend).await;
    let store = open(&url).await;
    // One request a second, bursts of two: the arrival time may run one second ahead.
    const SECOND: i64 = 1_000_000;
    let start = 1_700_000_000 * SECOND;
    let count = |key: &'static str, at: i64| {
        let store = store.clone();
        async move {
            store
                .throttle_counters()
                .count(key, at, SECOND, SECOND)
                .await
                .unwrap()
        }
    };
    let allowed = |tat_micros| Counted::Allowed { tat_micros };
    let refused = |tat_micros| Counted::Refused { tat_micros };
    assert_eq!(count("k", start).await, allowed(start + SECOND));
    assert_eq!(count("k", start).await, allowed(start + 2 * SECOND));
    assert_eq!(count("k", start).await, refused(start + 2 * SECOND));
    assert_eq!(count("other", start).await, allowed(start + SECOND));
    // A second later there is room for one more.
    assert_eq!(
        count("k", start + SECOND).await,
        allowed(start + 3 * SECOND)
    );
    assert_eq!(
        count("k", start + SECOND).await,
        refused(start + 3 * SECOND)
    );

    // The purge removes keys that are back at full allowance, and only those.
    let report = store
        .purge_expired(Timestamp::from_unix_millis((start + 2 * SECOND) / 1000), 0)
        .await
        .unwrap();
    assert_eq!(report.throttle_counters, 1);
    assert_eq!(
        count("k", start + 2 * SECOND).await,
        allowed(start + 4 * SECOND)
    );

    // Replicas counting at once share the burst: of 8 requests, 2 pass.
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        callers.spawn(count("race", start));
    }
    let passed = callers
        .join_all()
        .await
        .into_iter()
        .filter(|counted| matches!(counted, Counted::Allowed { .. }))
        .count();
    assert_eq!(passed, 2);
}

/// Every check above, once per backend: `storage::sqlite::NAME` and `storage::postgres::NAME`.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() { super::$check("sqlite").await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() { super::$check("postgres").await; })*
        }
    };
}

conformance!(
    migrations_bring_an_empty_database_to_the_latest_schema_once,
    concurrent_starts_migrate_exactly_once,
    a_newer_schema_is_refused_with_a_clear_message,
    users_are_created_found_and_listed_in_pages,
    a_taken_email_is_a_conflict_and_changes_nothing,
    insert_missing_skips_existing_accounts_in_one_transaction,
    roles_change_and_touch_updated_at,
    values_survive_a_reopen_byte_for_byte,
    ping_and_integrity_check_answer_on_a_healthy_database,
    purge_removes_only_what_has_expired,
    the_ca_inventory_and_revocation_counters_work,
    events_are_stored_once_paged_filtered_and_expired,
    the_audit_journal_chains_appends_signs_checkpoints_and_removes_whole_segments,
    devices_are_tagged_and_selected_and_an_open_update_is_found,
    concurrent_read_then_write_transactions_all_succeed,
    a_job_lease_has_one_holder_until_it_expires_or_is_released,
    shared_throttle_counters_allow_a_burst_then_one_per_interval,
);
