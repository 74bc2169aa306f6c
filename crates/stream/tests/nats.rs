//! The NATS JetStream stream against a real `nats-server -js`: the conformance suite, reopening,
//! a retried batch whose first events were already stored, two writers racing, an existing
//! stream of the wrong shape, foreign messages read as damaged, and an unreachable server.
//!
//! The server is `TRIPLICATE_TEST_NATS_URL` (default `nats://127.0.0.1:4222`; the README's test
//! command starts one when none answers). A missing server fails these tests: they are never
//! skipped. Each test works in its own JetStream stream and subjects, deleted at the end.

#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use triplicate_stream::conformance::run;
use triplicate_stream::fixtures::batch;
use triplicate_stream::{AppendRequest, EventStream, NatsOptions, NatsStream, StreamError};

fn url() -> String {
    std::env::var("TRIPLICATE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A stream and subject prefix no other test uses.
fn fresh_options() -> NatsOptions {
    let id = uuid::Uuid::now_v7().simple().to_string();
    NatsOptions {
        stream: format!("T{id}"),
        subject_prefix: format!("t{id}"),
        ..NatsOptions::default()
    }
}

async fn client() -> async_nats::jetstream::Context {
    let c = async_nats::connect(url()).await.unwrap_or_else(|e| {
        panic!(
            "NATS is not reachable at {} ({e}): start `nats-server -js` or set \
             TRIPLICATE_TEST_NATS_URL; the README's test command does this",
            url()
        )
    });
    async_nats::jetstream::new(c)
}

/// Opens a fresh stream; deletes it when dropped (best effort, on its own thread).
struct Fresh {
    store: NatsStream,
    options: NatsOptions,
}

impl Fresh {
    async fn new() -> Fresh {
        let options = fresh_options();
        let store = open(&options).await;
        Fresh { store, options }
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        let name = self.options.stream.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(c) = async_nats::connect(url()).await {
                    let _ = async_nats::jetstream::new(c).delete_stream(&name).await;
                }
            });
        })
        .join();
    }
}

async fn open(options: &NatsOptions) -> NatsStream {
    NatsStream::connect(&url(), options.clone())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "open a JetStream stream at {}: {e} (start `nats-server -js` or set \
                 TRIPLICATE_TEST_NATS_URL; the README's test command does this)",
                url()
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let f = Fresh::new().await;
    run(&f.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_reconnecting_and_positions_are_seq_plus_one() {
    let f = Fresh::new().await;
    let out = f.store.append(batch(0..300)).await.unwrap();
    assert_eq!((out.appended, out.highest_seq), (300, 299));
    drop(f.store.clone());
    let again = open(&f.options).await;
    assert_eq!(again.highest_seq().await.unwrap(), Some(299));
    let page = again.read_all(None, 10_000).await.unwrap();
    assert!(page.end);
    assert_eq!(page.events.len(), 300);
    for (i, e) in page.events.iter().enumerate() {
        assert_eq!(e.event.seq, i as u64);
        assert_eq!(e.position.parts(), (i as u64 + 1, 0));
    }
    let one = again.read_stream(&page.events[17].stream_id).await.unwrap();
    assert_eq!(one, vec![page.events[17].clone()]);
}

/// A batch whose first part the server already holds (an acknowledgement lost after the
/// commit) completes; the stored part counts as present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_whose_prefix_is_stored_completes_it() {
    let f = Fresh::new().await;
    let all = batch(0..500);
    f.store.append(all[..180].to_vec()).await.unwrap();
    let out = f.store.append(all.clone()).await.unwrap();
    assert_eq!((out.appended, out.already_present), (320, 180));
    assert_eq!(f.store.highest_seq().await.unwrap(), Some(499));
}

/// Two handles (two service processes, wrongly) append the same events at once: each call
/// either succeeds or fails as retryable, and the stream ends with every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_never_interleave_or_duplicate() {
    let f = Fresh::new().await;
    let other = open(&f.options).await;
    let all = batch(0..2_000);
    let mut tasks = Vec::new();
    for (k, s) in [f.store.clone(), other].into_iter().enumerate() {
        let all = all.clone();
        tasks.push(tokio::spawn(async move {
            let mut at = 0;
            let mut retried = 0;
            while at < all.len() {
                let end = (at + 250 + k * 7).min(all.len());
                match s.append(all[at..end].to_vec()).await {
                    Ok(_) => at = end,
                    Err(e) if e.is_retryable() => retried += 1,
                    Err(e) => panic!("writer {k}: {e}"),
                }
                assert!(retried < 1_000, "writer {k} never got through");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let page = f.store.read_all(None, 10_000).await.unwrap();
    assert_eq!(page.events.len(), 2_000);
    for (i, e) in page.events.iter().enumerate() {
        assert_eq!(e.event, all[i].event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_stream_of_another_shape_is_refused_and_left_alone() {
    let js = client().await;
    let options = fresh_options();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: options.stream.clone(),
        subjects: vec![format!("{}.decision.*", options.subject_prefix)],
        storage: async_nats::jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let err = NatsStream::connect(&url(), options.clone())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("not a Triplicate event stream")
            && text.contains("file storage")
            && text.contains("deleting or purging"),
        "{text}"
    );
    let info = js
        .get_stream(&options.stream)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert!(!info.config.deny_delete, "the stream was changed");
    js.delete_stream(&options.stream).await.unwrap();
}

/// A message published straight to a decision's subject (not through Triplicate) is reported
/// as damaged at its position by reads, and stops appends from writing past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_message_reads_as_damaged_at_its_position() {
    let f = Fresh::new().await;
    f.store.append(batch(0..3)).await.unwrap();
    let js = client().await;
    let subject = format!(
        "{}.decision.{}",
        f.options.subject_prefix,
        uuid::Uuid::now_v7().hyphenated()
    );
    js.publish(subject, "forged".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let err = f.store.read_all(None, 100).await.unwrap_err();
    assert!(
        matches!(&err, StreamError::Damaged { position, .. } if position.parts() == (4, 0)),
        "{err}"
    );
    // The three good events still read when the page stops before the forged one.
    assert_eq!(f.store.read_all(None, 3).await.unwrap().events.len(), 3);
    assert!(matches!(
        f.store.highest_seq().await.unwrap_err(),
        StreamError::Damaged { .. }
    ));
    let err = f.store.append(batch(3..5)).await.unwrap_err();
    assert!(matches!(err, StreamError::Damaged { .. }), "{err}");
}

/// A subscription catches up, then delivers live appends from another handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_sees_another_handles_appends() {
    let f = Fresh::new().await;
    f.store.append(batch(0..10)).await.unwrap();
    let mut sub = f.store.subscribe(None);
    for i in 0..10 {
        assert_eq!(sub.next().await.unwrap().unwrap().event.seq, i);
    }
    let other = open(&f.options).await;
    other.append(batch(10..12)).await.unwrap();
    for i in 10..12 {
        let e = tokio::time::timeout(std::time::Duration::from_secs(20), sub.next())
            .await
            .expect("live event")
            .unwrap()
            .unwrap();
        assert_eq!(e.event.seq, i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_retryable_and_bad_urls_are_not() {
    let mut o = fresh_options();
    o.request_timeout = std::time::Duration::from_secs(2);
    let err = NatsStream::connect("nats://127.0.0.1:1", o.clone())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = NatsStream::connect("nats://[::1", o).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("NATS server URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_the_limit_are_refused_before_any_request() {
    let f = Fresh::new().await;
    let limits = f.store.limits();
    let too_many: Vec<AppendRequest> = batch(0..limits.max_batch_events as u64 + 1);
    assert!(matches!(
        f.store.append(too_many).await.unwrap_err(),
        StreamError::BatchTooLarge { .. }
    ));
    assert_eq!(f.store.highest_seq().await.unwrap(), None);
}

/// A handle made while NATS is down reports each call as retryable, and works as soon as a
/// server answers (here one this test starts on a free port with its own store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_handle_waits_for_the_server_to_come_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut o = fresh_options();
    o.request_timeout = std::time::Duration::from_secs(2);
    let s = NatsStream::lazy(&format!("nats://127.0.0.1:{port}"), o).unwrap();
    let err = s.highest_seq().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let store = tempfile::tempdir().unwrap();
    let mut server = std::process::Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect(
            "run nats-server (Debian package nats-server; the README's test command installs it)",
        );
    let mut result = Err(err);
    for _ in 0..100 {
        result = s.highest_seq().await;
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let outcome = async {
        assert_eq!(result.unwrap(), None);
        s.append(batch(0..5)).await.unwrap();
        assert_eq!(s.highest_seq().await.unwrap(), Some(4));
    };
    let r = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    let _ = server.kill();
    let _ = server.wait();
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}

/// A nats-server this test starts, with authorization on: one user, `triplicate`, allowed to
/// publish on `publish` and to subscribe on `_INBOX.>`. Killed when dropped.
struct AuthServer {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl AuthServer {
    fn start(publish: &[&str]) -> AuthServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nats.conf");
        let allow: Vec<String> = publish.iter().map(|p| format!("{p:?}")).collect();
        std::fs::write(
            &conf,
            format!(
                r#"
listen: "127.0.0.1:{port}"
jetstream {{ store_dir: "{store}" }}
authorization {{
  users = [
    {{
      user: triplicate, password: "s3cret-for-tests",
      permissions: {{
        publish: {{ allow: [{allow}] }}
        subscribe: {{ allow: ["_INBOX.>"] }}
      }}
    }}
  ]
}}
"#,
                store = dir.path().join("js").display(),
                allow = allow.join(", ")
            ),
        )
        .unwrap();
        let log = dir.path().join("nats.log");
        let child = std::process::Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .arg("-l")
            .arg(&log)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run nats-server (Debian package nats-server)");
        AuthServer {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("nats://triplicate:s3cret-for-tests@127.0.0.1:{}", self.port)
    }

    /// Connects as the user, waiting for the server to come up.
    async fn connect(&self, options: NatsOptions) -> NatsStream {
        for _ in 0..100 {
            match NatsStream::connect(&self.url(), options.clone()).await {
                Ok(s) => return s,
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the authorising nats-server did not come up");
    }

    fn violations(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Violation"))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the README's Production section allows the service's NATS user to publish.
const DOCUMENTED: [&str; 7] = [
    "triplicate.decision.>",
    "$JS.API.INFO",
    "$JS.API.STREAM.*.TRIPLICATE",
    "$JS.API.STREAM.MSG.GET.TRIPLICATE",
    "$JS.API.CONSUMER.*.TRIPLICATE",
    "$JS.API.CONSUMER.*.TRIPLICATE.>",
    "$JS.API.CONSUMER.MSG.NEXT.TRIPLICATE.*",
];

/// The permissions the README's Production section gives the service's NATS user suffice for
/// everything the backend does: the conformance suite runs as a user with exactly those, and
/// the server logs no violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_nats_permissions_suffice() {
    let server = AuthServer::start(&DOCUMENTED);
    let store = server.connect(NatsOptions::default()).await;
    tokio::time::timeout(std::time::Duration::from_secs(120), run(&store))
        .await
        .unwrap_or_else(|_| panic!("the suite did not finish: {:#?}", server.violations()));
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
    // Without the password: refused, not retryable, and the password is never shown.
    let err = NatsStream::connect(
        &format!("nats://127.0.0.1:{}", server.port),
        NatsOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let err = NatsStream::connect(
        &format!("nats://triplicate:wrong-s3cret@127.0.0.1:{}", server.port),
        NatsOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

/// A permission missing for reads makes reads fail as retryable within the request timeout,
/// never hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_the_server_never_answers_fails_instead_of_hanging() {
    let without_next: Vec<&str> = DOCUMENTED
        .iter()
        .copied()
        .filter(|p| !p.contains("MSG.NEXT"))
        .collect();
    let server = AuthServer::start(&without_next);
    let store = server
        .connect(NatsOptions {
            request_timeout: std::time::Duration::from_secs(1),
            ..NatsOptions::default()
        })
        .await;
    store.append(batch(0..3)).await.unwrap();
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), store.read_all(None, 10))
        .await
        .expect("read_all returned")
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        server.violations().iter().any(|v| v.contains("MSG.NEXT")),
        "{:#?}",
        server.violations()
    );
}
