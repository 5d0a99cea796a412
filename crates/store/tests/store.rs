//! The store's behaviour, run against SQLite and PostgreSQL alike.

use pipeline_core::{AudioStatus, JobError, JobStatus, JobType};
use pipeline_store::{
    AttemptOutcome, DeliveryStatus, Heartbeat, JobClaim, Lease, NewJob, Reclaim, Store, StoreError,
    WebhookEndpoint,
};
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

mod common;

use common::*;

#[tokio::test]
async fn a_file_moves_through_both_stages_with_an_audit_trail() {
    for (store, _dir) in stores().await {
        let (audio, jobs) = store
            .ingest(&new_audio("a1"), &pipeline_jobs())
            .await
            .unwrap();
        assert_eq!(audio.status, AudioStatus::Queued);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].status, JobStatus::Queued);
        assert_eq!(jobs[1].status, JobStatus::Pending);
        assert_eq!(store.schema_version().await.unwrap(), 6);

        let t = store
            .claim("w1", &[], LEASE)
            .await
            .unwrap()
            .expect("transcription claimable");
        assert_eq!(
            (t.job_type, t.status, t.attempt),
            (JobType::Transcription, JobStatus::Running, 1)
        );
        assert!(
            store.claim("w2", &[], LEASE).await.unwrap().is_none(),
            "PROCESSING waits"
        );
        assert_eq!(
            store.audio(audio.id).await.unwrap().status,
            AudioStatus::Processing
        );

        let beat = store
            .heartbeat(&Lease::of(&t), Some(40.0), LEASE)
            .await
            .unwrap();
        assert_eq!(
            beat,
            Heartbeat::Held {
                cancel_requested: false
            }
        );
        store
            .heartbeat(&Lease::of(&t), Some(20.0), LEASE)
            .await
            .unwrap();
        assert_eq!(
            store.job(t.id).await.unwrap().progress,
            40.0,
            "progress never goes back"
        );

        store.complete(&Lease::of(&t), "transcribed").await.unwrap();
        let p = store
            .claim("w2", &[], LEASE)
            .await
            .unwrap()
            .expect("processing queued");
        assert_eq!(p.job_type, JobType::Processing);
        store.complete(&Lease::of(&p), "rendered").await.unwrap();
        assert_eq!(
            store.audio(audio.id).await.unwrap().status,
            AudioStatus::Completed
        );

        let trail: Vec<(Option<JobStatus>, JobStatus)> = store
            .events_for_job(p.id)
            .await
            .unwrap()
            .iter()
            .map(|e| (e.from_status, e.to_status))
            .collect();
        assert_eq!(
            trail,
            vec![
                (None, JobStatus::Pending),
                (Some(JobStatus::Pending), JobStatus::Queued),
                (Some(JobStatus::Queued), JobStatus::Running),
                (Some(JobStatus::Running), JobStatus::Completed),
            ]
        );
        let dup = store
            .find_completed_duplicate("a1", "settings")
            .await
            .unwrap();
        assert_eq!(dup.map(|a| a.id), Some(audio.id));
    }
}

#[tokio::test]
async fn retryable_failures_come_back_and_permanent_ones_fail_the_file() {
    for (store, _dir) in stores().await {
        let (audio, _) = store
            .ingest(&new_audio("b1"), &pipeline_jobs())
            .await
            .unwrap();
        let t = store.claim("w1", &[], LEASE).await.unwrap().unwrap();
        let retry_at = chrono::Utc::now() - chrono::Duration::seconds(1);
        let failed = store
            .fail(
                &Lease::of(&t),
                &JobError::retryable("broker blip"),
                Some(retry_at),
            )
            .await
            .unwrap();
        assert_eq!(failed.status, JobStatus::Retrying);
        let again = store
            .claim("w2", &[], LEASE)
            .await
            .unwrap()
            .expect("claimable after backoff");
        assert_eq!((again.id, again.attempt), (t.id, 2));
        store
            .fail(
                &Lease::of(&again),
                &JobError::permanent("undecodable audio"),
                None,
            )
            .await
            .unwrap();
        let jobs = store.jobs_for_audio(audio.id).await.unwrap();
        assert_eq!(jobs[0].status, JobStatus::Failed);
        assert_eq!(jobs[0].error.as_ref().unwrap().message, "undecodable audio");
        assert_eq!(
            jobs[1].status,
            JobStatus::Failed,
            "the dependent job fails too"
        );
        assert_eq!(
            store.audio(audio.id).await.unwrap().status,
            AudioStatus::Failed
        );

        let retried = store.retry(audio.id, None).await.unwrap();
        assert_eq!(retried.len(), 2);
        let jobs = store.jobs_for_audio(audio.id).await.unwrap();
        assert_eq!((jobs[0].status, jobs[0].attempt), (JobStatus::Queued, 0));
        assert_eq!(jobs[1].status, JobStatus::Pending);
        assert!(jobs[0].error.is_none());
    }
}

#[tokio::test]
async fn an_expired_lease_hands_the_job_to_another_worker() {
    for (store, _dir) in stores().await {
        store
            .ingest(&new_audio("c1"), &pipeline_jobs())
            .await
            .unwrap();
        let t = store
            .claim("dead", &[], Duration::from_millis(1))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t2 = store
            .claim("alive", &[], LEASE)
            .await
            .unwrap()
            .expect("reclaimed");
        assert_eq!(
            (t2.id, t2.attempt, t2.worker.as_deref()),
            (t.id, 2, Some("alive"))
        );
        assert_eq!(
            store.heartbeat(&Lease::of(&t), None, LEASE).await.unwrap(),
            Heartbeat::Lost
        );
        let late = store.complete(&Lease::of(&t), "late").await;
        assert!(matches!(late, Err(StoreError::Conflict { .. })), "{late:?}");
        let messages: Vec<String> = store
            .events_for_job(t.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert!(
            messages.iter().any(|m| m.contains("lease of dead expired")),
            "{messages:?}"
        );
    }
}

#[tokio::test]
async fn only_its_own_transport_or_its_own_message_puts_back_a_broker_job() {
    for (store, _dir) in stores().await {
        // Two files whose jobs a broker carries, each transcription claimed
        // from its message by a worker that then dies.
        let mut held = Vec::new();
        for sha in ["r1", "r2"] {
            let jobs: Vec<NewJob> = pipeline_jobs()
                .into_iter()
                .map(|mut j| {
                    j.transport = "redis".to_string();
                    j
                })
                .collect();
            let (_, jobs) = store.ingest(&new_audio(sha), &jobs).await.unwrap();
            let claim = store
                .claim_job(jobs[0].id, "dead", Duration::from_millis(1))
                .await
                .unwrap();
            let JobClaim::Claimed(job) = claim else {
                panic!("{claim:?}")
            };
            held.push(job);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;

        // The embedded queue's claim must leave them: nobody would send
        // their messages again, and they would sit QUEUED for good.
        assert!(store.claim("local", &[], LEASE).await.unwrap().is_none());
        for job in &held {
            assert_eq!(store.job(job.id).await.unwrap().status, JobStatus::Running);
        }

        // The delivery of the first one's own message puts back that one
        // only, and runs it.
        let claim = store.claim_job(held[0].id, "alive", LEASE).await.unwrap();
        let JobClaim::Claimed(again) = claim else {
            panic!("{claim:?}")
        };
        assert_eq!((again.attempt, again.worker.as_deref()), (2, Some("alive")));
        assert_eq!(
            store.job(held[1].id).await.unwrap().status,
            JobStatus::Running
        );

        // Another transport's sweep leaves it; its own sweep returns it so
        // that its message is sent again.
        assert!(store
            .reclaim_expired(Reclaim::Transport("amqp"))
            .await
            .unwrap()
            .is_empty());
        let back = store
            .reclaim_expired(Reclaim::Transport("redis"))
            .await
            .unwrap();
        assert_eq!(
            back.iter().map(|j| (j.id, j.status)).collect::<Vec<_>>(),
            vec![(held[1].id, JobStatus::Queued)]
        );
    }
}

#[tokio::test]
async fn cancel_stops_waiting_jobs_at_once_and_running_ones_at_their_next_beat() {
    for (store, _dir) in stores().await {
        let (audio, _) = store
            .ingest(&new_audio("d1"), &pipeline_jobs())
            .await
            .unwrap();
        let t = store.claim("w1", &[], LEASE).await.unwrap().unwrap();
        let changed = store.cancel(audio.id, None).await.unwrap();
        assert_eq!(changed.len(), 2);
        let jobs = store.jobs_for_audio(audio.id).await.unwrap();
        assert_eq!(jobs[0].status, JobStatus::Running);
        assert!(jobs[0].cancel_requested);
        assert_eq!(jobs[1].status, JobStatus::Cancelled);
        assert_eq!(
            store
                .heartbeat(&Lease::of(&t), Some(10.0), LEASE)
                .await
                .unwrap(),
            Heartbeat::Held {
                cancel_requested: true
            }
        );
        store.cancel_running(&Lease::of(&t)).await.unwrap();
        assert_eq!(
            store.audio(audio.id).await.unwrap().status,
            AudioStatus::Cancelled
        );
        assert!(store.claim("w1", &[], LEASE).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn a_released_job_does_not_use_up_an_attempt() {
    for (store, _dir) in stores().await {
        store
            .ingest(&new_audio("e1"), &pipeline_jobs())
            .await
            .unwrap();
        let t = store.claim("w1", &[], LEASE).await.unwrap().unwrap();
        let released = store
            .release(&Lease::of(&t), "worker stopping")
            .await
            .unwrap();
        assert_eq!((released.status, released.attempt), (JobStatus::Queued, 0));
        let again = store.claim("w2", &[], LEASE).await.unwrap().unwrap();
        assert_eq!(again.attempt, 1);
    }
}

#[tokio::test]
async fn concurrent_workers_never_claim_the_same_job() {
    for (store, _dir) in stores().await {
        let mut expected = HashSet::new();
        for i in 0..12 {
            let (_, jobs) = store
                .ingest(&new_audio(&format!("f{i}")), &pipeline_jobs())
                .await
                .unwrap();
            expected.insert(jobs[0].id);
        }
        let mut handles = Vec::new();
        for w in 0..4 {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(job) = store
                    .claim(&format!("w{w}"), &[JobType::Transcription], LEASE)
                    .await
                    .unwrap()
                {
                    mine.push(job.id);
                }
                mine
            }));
        }
        let mut claimed = Vec::new();
        for h in handles {
            claimed.extend(h.await.unwrap());
        }
        let unique: HashSet<Uuid> = claimed.iter().copied().collect();
        assert_eq!(claimed.len(), unique.len(), "a job was claimed twice");
        assert_eq!(unique, expected);
    }
}

#[tokio::test]
async fn unreachable_databases_say_so() {
    let err = Store::connect("postgres://nobody@127.0.0.1:1/none")
        .await
        .err()
        .expect("no server listens on port 1");
    assert!(err.is_unreachable(), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(matches!(
        Store::connect("mysql://x").await,
        Err(StoreError::UnsupportedUrl(_))
    ));
}

/// A broker's message claims one job by id: run it when runnable, else say
/// why not (held by another worker, finished, waiting, backing off, gone).
#[tokio::test]
async fn a_delivered_job_is_claimed_by_id_once() {
    use pipeline_store::JobClaim;
    for (store, _dir) in stores().await {
        let broker_jobs: Vec<NewJob> = pipeline_jobs()
            .into_iter()
            .map(|j| NewJob {
                transport: "redis".into(),
                ..j
            })
            .collect();
        let (_, jobs) = store.ingest(&new_audio("c1"), &broker_jobs).await.unwrap();
        assert!(
            store.claim("poller", &[], LEASE).await.unwrap().is_none(),
            "broker jobs are not claimed from the table"
        );
        assert_eq!(
            store.claim_job(jobs[1].id, "w1", LEASE).await.unwrap(),
            JobClaim::Waiting
        );
        let JobClaim::Claimed(running) = store.claim_job(jobs[0].id, "w1", LEASE).await.unwrap()
        else {
            panic!("the first stage is runnable");
        };
        assert_eq!(
            (running.attempt, running.worker.as_deref()),
            (1, Some("w1"))
        );
        match store.claim_job(jobs[0].id, "w2", LEASE).await.unwrap() {
            JobClaim::Busy { holder, .. } => assert_eq!(holder, "w1"),
            other => panic!("expected Busy, got {other:?}"),
        }
        store
            .fail(
                &Lease::of(&running),
                &JobError::retryable("blip"),
                Some(chrono::Utc::now() + chrono::Duration::seconds(30)),
            )
            .await
            .unwrap();
        assert!(matches!(
            store.claim_job(jobs[0].id, "w2", LEASE).await.unwrap(),
            JobClaim::NotYet(_)
        ));
        store.cancel(running.audio_id, None).await.unwrap();
        assert_eq!(
            store.claim_job(jobs[0].id, "w2", LEASE).await.unwrap(),
            JobClaim::Finished(JobStatus::Cancelled)
        );
        assert_eq!(
            store.claim_job(Uuid::new_v4(), "w2", LEASE).await.unwrap(),
            JobClaim::Missing
        );
        store
            .note(jobs[0].id, Some("w2"), "duplicate")
            .await
            .unwrap();
        let last = store.events_for_job(jobs[0].id).await.unwrap();
        let last = last.last().unwrap();
        assert_eq!(last.message, "duplicate");
        assert_eq!(last.from_status, Some(JobStatus::Cancelled));
        assert_eq!(last.to_status, JobStatus::Cancelled);
    }
}

/// Jobs a broker could not take move to the embedded queue, with a note.
#[tokio::test]
async fn jobs_fall_back_to_the_embedded_queue() {
    for (store, _dir) in stores().await {
        let broker_jobs: Vec<NewJob> = pipeline_jobs()
            .into_iter()
            .map(|j| NewJob {
                transport: "amqp".into(),
                ..j
            })
            .collect();
        let (_, jobs) = store.ingest(&new_audio("f1"), &broker_jobs).await.unwrap();
        assert_eq!(store.waiting_on_transport("amqp").await.unwrap().len(), 1);
        store
            .fall_back_to_embedded(&[jobs[0].id], "connection refused")
            .await
            .unwrap();
        assert!(store.waiting_on_transport("amqp").await.unwrap().is_empty());
        let claimed = store
            .claim("w1", &[], LEASE)
            .await
            .unwrap()
            .expect("claimable");
        assert_eq!(claimed.id, jobs[0].id);
        assert_eq!(claimed.transport, "embedded");
        let trail = store.events_for_job(jobs[0].id).await.unwrap();
        assert!(trail
            .iter()
            .any(|e| e.message.contains("connection refused") && e.message.contains("fell back")));
    }
}

/// API keys: shown once, stored as a digest, usable until revoked.
#[tokio::test]
async fn api_keys_work_until_revoked() {
    for (store, _dir) in stores().await {
        let (record, key) = store.create_api_key("ci").await.unwrap();
        assert!(key.starts_with("pm_") && key.len() > 40);
        assert_eq!(store.verify_api_key(&key).await.unwrap(), Some(record.id));
        assert_eq!(store.verify_api_key("pm_wrong").await.unwrap(), None);
        let listed = store.api_keys().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].last_used_at.is_some());
        assert!(store.revoke_api_key(record.id).await.unwrap());
        assert!(!store.revoke_api_key(record.id).await.unwrap());
        assert_eq!(store.verify_api_key(&key).await.unwrap(), None);
    }
}

/// Runs every claimable job to completion, reporting progress on the way.
async fn run_all(store: &Store) {
    while let Some(job) = store.claim("w1", &[], LEASE).await.unwrap() {
        for p in [5.0, 12.0, 14.0, 35.0] {
            store
                .heartbeat(&Lease::of(&job), Some(p), LEASE)
                .await
                .unwrap();
        }
        store.complete(&Lease::of(&job), "done").await.unwrap();
    }
}

/// The deliveries of one file to one endpoint, oldest first, named
/// `event(JOB TYPE)`.
async fn delivered_names(store: &Store, audio_id: Uuid, url: &str) -> Vec<String> {
    let mut listed = store.webhook_deliveries(None, 1000).await.unwrap();
    listed.retain(|d| d.url == url && d.audio_id == audio_id);
    listed.reverse();
    listed
        .iter()
        .map(|d| {
            let body: serde_json::Value = serde_json::from_str(&d.payload).unwrap();
            assert_eq!(body["event"], d.event.as_str());
            assert_eq!(body["id"], d.event_id.to_string());
            match body["job"]["type"].as_str() {
                Some(t) => format!("{}({t})", d.event),
                None => d.event.clone(),
            }
        })
        .collect()
}

#[tokio::test]
async fn transitions_write_webhook_events_that_are_delivered_in_order() {
    let lifecycle = [
        "audio.queued",
        "job.started(TRANSCRIPTION)",
        "job.progress(TRANSCRIPTION)",
        "job.progress(TRANSCRIPTION)",
        "job.completed(TRANSCRIPTION)",
        "job.started(PROCESSING)",
        "job.progress(PROCESSING)",
        "job.progress(PROCESSING)",
        "job.completed(PROCESSING)",
        "audio.completed",
    ];
    let global = WebhookEndpoint {
        url: "http://receiver/global".into(),
        secret: Some("g".into()),
    };
    let own = WebhookEndpoint {
        url: "http://receiver/own".into(),
        secret: Some("o".into()),
    };
    for (store, _dir) in stores().await {
        // No global endpoints: only a file with its own endpoint is reported.
        store
            .ingest(&new_audio("quiet"), &pipeline_jobs())
            .await
            .unwrap();
        let mut with_own = new_audio("own");
        with_own.webhooks = vec![own.clone()];
        let (own_file, _) = store.ingest(&with_own, &pipeline_jobs()).await.unwrap();
        run_all(&store).await;
        // Global endpoints: every file is.
        let store = store.with_webhooks_for_all_files(true);
        let (loud, _) = store
            .ingest(&new_audio("loud"), &pipeline_jobs())
            .await
            .unwrap();
        run_all(&store).await;
        store
            .fan_out_webhook_events(std::slice::from_ref(&global), 1000)
            .await
            .unwrap();
        assert_eq!(
            delivered_names(&store, own_file.id, &own.url).await,
            lifecycle
        );
        assert_eq!(
            delivered_names(&store, loud.id, &global.url).await,
            lifecycle
        );
        let all = store.webhook_deliveries(None, 1000).await.unwrap();
        // The own file's events go to both endpoints; the quiet file's nowhere.
        assert_eq!(all.len(), 3 * lifecycle.len(), "nothing for the quiet file");
        assert!(all.iter().all(|d| d.status == DeliveryStatus::Pending));
        let own_delivery = all.iter().find(|d| d.url == own.url).unwrap();
        assert_eq!(own_delivery.secret.as_deref(), Some("o"));

        // Each endpoint's oldest delivery heads its line; taken ones are held.
        let due = store.take_due_webhook_deliveries(10, LEASE).await.unwrap();
        assert_eq!(due.len(), 2, "{due:#?}");
        assert!(due.iter().all(|d| d.event == "audio.queued"));
        assert!(store
            .take_due_webhook_deliveries(10, LEASE)
            .await
            .unwrap()
            .is_empty());
        let head = due.iter().find(|d| d.url == global.url).unwrap();
        store
            .finish_webhook_attempt(head.id, &AttemptOutcome::Delivered { status_code: 204 })
            .await
            .unwrap();
        let next = store.take_due_webhook_deliveries(10, LEASE).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].event, "job.started");
        assert_eq!(next[0].url, global.url);

        // A delivery that gives up is FAILED until retried; a delivered one
        // cannot be retried.
        let other = due.iter().find(|d| d.url == own.url).unwrap();
        store
            .finish_webhook_attempt(
                other.id,
                &AttemptOutcome::Failed {
                    status_code: Some(500),
                    error: "the endpoint answered 500".into(),
                    retry_at: None,
                },
            )
            .await
            .unwrap();
        let failed = store.webhook_delivery(other.id).await.unwrap();
        assert_eq!(failed.status, DeliveryStatus::Failed);
        assert_eq!((failed.attempts, failed.last_status_code), (1, Some(500)));
        assert_eq!(
            store.webhook_delivery_counts().await.unwrap(),
            vec![
                ("DELIVERED".to_string(), 1),
                ("FAILED".to_string(), 1),
                ("PENDING".to_string(), 3 * lifecycle.len() as u64 - 2),
            ]
        );
        let retried = store.retry_webhook_delivery(other.id).await.unwrap();
        assert_eq!(retried.status, DeliveryStatus::Pending);
        assert!(matches!(
            store.retry_webhook_delivery(head.id).await,
            Err(StoreError::AlreadyDelivered(_))
        ));
        assert!(matches!(
            store.retry_webhook_delivery(999_999).await,
            Err(StoreError::NotFoundDelivery(_))
        ));
    }
}

#[tokio::test]
async fn jobs_delivered_together_are_claimed_and_completed_together_with_their_guards() {
    use pipeline_store::{AudioResults, Completion, JobClaim};
    for (store, _dir) in stores().await {
        let mut first_jobs = Vec::new();
        let mut files = Vec::new();
        for sha in ["b1", "b2", "b3"] {
            let (audio, jobs) = store
                .ingest(&new_audio(sha), &pipeline_jobs())
                .await
                .unwrap();
            files.push(audio.id);
            first_jobs.push(jobs[0].clone());
        }
        let (a, b, c) = (&first_jobs[0], &first_jobs[1], &first_jobs[2]);
        let unknown = Uuid::new_v4();
        let answers = store
            .claim_jobs(&[a.id, b.id, unknown, a.id, c.id], "w1", LEASE)
            .await
            .unwrap();
        assert_eq!(answers.len(), 5);
        let claimed: Vec<_> = answers
            .iter()
            .filter_map(|answer| match answer {
                JobClaim::Claimed(job) => Some(job.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![a.id, b.id, c.id],
            "{answers:?}"
        );
        assert!(claimed
            .iter()
            .all(|j| j.status == JobStatus::Running && j.attempt == 1));
        assert_eq!(answers[2], JobClaim::Missing);
        assert!(
            matches!(&answers[3], JobClaim::Busy { holder, .. } if holder == "w1"),
            "the second copy of a message waits: {:?}",
            answers[3]
        );
        for id in &files {
            assert_eq!(
                store.audio(*id).await.unwrap().status,
                AudioStatus::Processing
            );
        }
        let again = store.claim_jobs(&[a.id, c.id], "w2", LEASE).await.unwrap();
        assert!(again
            .iter()
            .all(|answer| matches!(answer, JobClaim::Busy { holder, .. } if holder == "w1")));

        let results = AudioResults {
            outputs: [("txt".to_string(), "/out/talk.txt".to_string())].into(),
            words: 12,
            speech_seconds: 5.0,
            words_per_minute: 144.0,
        };
        let (lease_a, lease_b) = (Lease::of(&claimed[0]), Lease::of(&claimed[1]));
        let ended = store
            .complete_all(&[
                Completion {
                    held: &lease_a,
                    message: "transcribed",
                    results: Some(&results),
                },
                Completion {
                    held: &lease_b,
                    message: "transcribed",
                    results: None,
                },
            ])
            .await
            .unwrap();
        assert_eq!(ended.len(), 2);
        for done in &ended {
            assert_eq!(done.job.status, JobStatus::Completed);
            let statuses: Vec<_> = done.file_jobs.iter().map(|j| j.status).collect();
            assert_eq!(statuses, vec![JobStatus::Completed, JobStatus::Queued]);
        }
        assert_eq!(
            store.results(files[0]).await.unwrap(),
            Some(results.clone())
        );
        assert_eq!(store.results(files[1]).await.unwrap(), None);
        assert_eq!(
            store.claim_jobs(&[a.id, b.id], "w1", LEASE).await.unwrap(),
            vec![
                JobClaim::Finished(JobStatus::Completed),
                JobClaim::Finished(JobStatus::Completed)
            ]
        );

        // A stale lease among them: nothing is written, not even the good one.
        let lease_c = Lease::of(&claimed[2]);
        let conflict = store
            .complete_all(&[
                Completion {
                    held: &lease_c,
                    message: "transcribed",
                    results: None,
                },
                Completion {
                    held: &lease_a,
                    message: "again",
                    results: None,
                },
            ])
            .await;
        assert!(
            matches!(conflict, Err(StoreError::Conflict { .. })),
            "{conflict:?}"
        );
        assert_eq!(store.job(c.id).await.unwrap().status, JobStatus::Running);

        let trail: Vec<(Option<JobStatus>, JobStatus, Option<String>)> = store
            .events_for_job(a.id)
            .await
            .unwrap()
            .iter()
            .map(|e| (e.from_status, e.to_status, e.worker.clone()))
            .collect();
        assert_eq!(
            trail,
            vec![
                (None, JobStatus::Queued, None),
                (
                    Some(JobStatus::Queued),
                    JobStatus::Running,
                    Some("w1".into())
                ),
                (
                    Some(JobStatus::Running),
                    JobStatus::Completed,
                    Some("w1".into())
                ),
            ]
        );
    }
}

#[tokio::test]
async fn files_and_their_transcripts_are_read_together() {
    use pipeline_core::{Segment, Transcript};
    for (store, _dir) in stores().await {
        let (with, _) = store
            .ingest(&new_audio("t1"), &pipeline_jobs())
            .await
            .unwrap();
        let (without, _) = store
            .ingest(&new_audio("t2"), &pipeline_jobs())
            .await
            .unwrap();
        let transcript = Transcript {
            language: "en".into(),
            language_probability: 0.9,
            duration: 2.0,
            model: "tiny.en".into(),
            segments: vec![Segment {
                id: 0,
                start: 0.0,
                end: 2.0,
                text: " Hello there.".into(),
                avg_logprob: -0.1,
                no_speech_prob: 0.01,
                compression_ratio: 1.1,
                temperature: 0.0,
                words: Vec::new(),
                speaker: None,
            }],
            speakers: Vec::new(),
        };
        store.save_transcript(with.id, &transcript).await.unwrap();
        let missing = Uuid::new_v4();
        let read = store
            .audio_with_transcripts(&[without.id, missing, with.id])
            .await
            .unwrap();
        assert_eq!(read.len(), 2, "a file that does not exist is left out");
        let by_id: std::collections::HashMap<_, _> = read
            .into_iter()
            .map(|(audio, t)| (audio.id, (audio, t)))
            .collect();
        let (audio, stored) = &by_id[&with.id];
        assert_eq!(audio.storage_key, with.storage_key);
        assert_eq!(stored.as_ref(), Some(&transcript));
        let (audio, stored) = &by_id[&without.id];
        assert_eq!(audio.storage_key, without.storage_key);
        assert!(stored.is_none(), "a file without a transcript has none");
        assert!(store.audio_with_transcripts(&[]).await.unwrap().is_empty());
    }
}
