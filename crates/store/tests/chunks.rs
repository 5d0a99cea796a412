//! Chunks of long transcriptions: cut once, taken by any worker, taken
//! again when their worker dies, and retried alone when they fail; on
//! SQLite and PostgreSQL alike.

mod common;

use common::*;
use pipeline_core::{ChunkStatus, JobStatus, Segment};
use pipeline_store::{ChunkLease, ChunkScope, Lease};
use std::time::Duration;

fn segment(start: f64, text: &str) -> Segment {
    Segment {
        id: 0,
        start,
        end: start + 1.0,
        text: text.into(),
        avg_logprob: -0.2,
        no_speech_prob: 0.01,
        compression_ratio: 1.2,
        temperature: 0.0,
        words: Vec::new(),
        speaker: None,
    }
}

const SPANS: [(f64, f64); 3] = [(0.0, 59.5), (59.5, 121.0), (121.0, 180.0)];

#[tokio::test]
async fn chunks_are_cut_once_and_taken_by_any_worker_once() {
    for (store, _dir) in stores().await {
        let (audio, _) = store
            .ingest(&new_audio("c1"), &pipeline_jobs())
            .await
            .unwrap();
        let job = store.claim("holder", &[], LEASE).await.unwrap().unwrap();
        let chunks = store
            .create_chunks(job.id, &SPANS, "cut into 3 chunks")
            .await
            .unwrap();
        assert_eq!(chunks.len(), 3);
        // A second holder's cut (after a lost lease) keeps the first one's.
        let again = store
            .create_chunks(job.id, &[(0.0, 90.0), (90.0, 180.0)], "cut again")
            .await
            .unwrap();
        assert_eq!(again, chunks);

        // Two workers take different chunks; the holder the third.
        let a = store
            .claim_chunk(ChunkScope::Any, "helper-a", LEASE)
            .await
            .unwrap()
            .unwrap();
        let b = store
            .claim_chunk(ChunkScope::One(job.id, 2), "helper-b", LEASE)
            .await
            .unwrap()
            .unwrap();
        let c = store
            .claim_chunk(ChunkScope::Job(job.id), "holder", LEASE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((a.index, b.index, c.index), (0, 2, 1));
        assert!(store
            .claim_chunk(ChunkScope::Any, "helper-c", LEASE)
            .await
            .unwrap()
            .is_none());
        // A message for a chunk another worker holds takes nothing.
        assert!(store
            .claim_chunk(ChunkScope::One(job.id, 0), "helper-c", LEASE)
            .await
            .unwrap()
            .is_none());

        for (chunk, text) in [(&a, " one"), (&b, " three"), (&c, " two")] {
            let done = store
                .complete_chunk(
                    &ChunkLease::of(chunk),
                    "en",
                    0.98,
                    vec![segment(chunk.start, text)],
                    "done",
                )
                .await
                .unwrap();
            assert!(done);
        }
        // A second completion by the same worker is refused.
        assert!(!store
            .complete_chunk(&ChunkLease::of(&a), "en", 0.98, Vec::new(), "twice")
            .await
            .unwrap());
        let stored = store.chunks(job.id).await.unwrap();
        assert!(stored.iter().all(|c| c.status == ChunkStatus::Completed));
        assert_eq!(stored[1].segments[0].text, " two");
        assert_eq!(stored[1].worker.as_deref(), Some("holder"));
        let counts = store.chunk_counts(&[job.id]).await.unwrap();
        assert_eq!((counts[&job.id].total, counts[&job.id].done), (3, 3));
        // `/metrics`' chunk durations count each finished chunk once.
        let metrics = store.job_metrics(&[3600.0]).await.unwrap();
        assert_eq!(metrics.chunk_durations.len(), 1, "{metrics:?}");
        let chunked = &metrics.chunk_durations[0];
        assert_eq!(
            (chunked.job_type.as_str(), chunked.count),
            ("TRANSCRIPTION", 3)
        );
        assert_eq!(chunked.buckets, vec![(3600.0, 3)]);

        let trail: Vec<String> = store
            .events_for_job(job.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect();
        for expected in [
            "cut into 3 chunks",
            "chunk 1 of 3 (0.0-59.5 s) taken by helper-a (attempt 1)",
            "chunk 3 of 3 (121.0-180.0 s) taken by helper-b (attempt 1)",
            "chunk 2 of 3 (59.5-121.0 s) done",
        ] {
            assert!(
                trail.iter().any(|m| m == expected),
                "{expected:?} in {trail:#?}"
            );
        }
        assert!(!trail.iter().any(|m| m == "cut again"), "{trail:#?}");
        let _ = audio;
    }
}

#[tokio::test]
async fn a_dead_workers_chunk_is_taken_again_and_finished_ones_are_not() {
    for (store, _dir) in stores().await {
        store
            .ingest(&new_audio("c2"), &pipeline_jobs())
            .await
            .unwrap();
        let job = store.claim("holder", &[], LEASE).await.unwrap().unwrap();
        store.create_chunks(job.id, &SPANS, "cut").await.unwrap();
        let first = store
            .claim_chunk(ChunkScope::Job(job.id), "holder", LEASE)
            .await
            .unwrap()
            .unwrap();
        store
            .complete_chunk(&ChunkLease::of(&first), "en", 1.0, Vec::new(), "done")
            .await
            .unwrap();
        let doomed = store
            .claim_chunk(ChunkScope::Any, "doomed", Duration::from_millis(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(doomed.index, 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let taker = store
            .claim_chunk(ChunkScope::Any, "taker", LEASE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((taker.index, taker.attempt), (1, 2), "the lost chunk first");
        // The dead worker's late completion is refused.
        assert!(!store
            .complete_chunk(&ChunkLease::of(&doomed), "en", 1.0, Vec::new(), "late")
            .await
            .unwrap());
        let trail = store.events_for_job(job.id).await.unwrap();
        assert!(
            trail.iter().any(|e| e.message
                == "chunk 2 of 3 (59.5-121.0 s) taken by taker (attempt 2, after doomed was lost with it)"),
            "{trail:#?}"
        );
        // Chunks of a job that is not running are not handed out.
        let cancelled = store.cancel(job.audio_id, None).await.unwrap();
        assert!(!cancelled.is_empty());
        store
            .release_chunk(&ChunkLease::of(&taker), "its job was cancelled")
            .await
            .unwrap();
        let holder_lease = Lease::of(&job);
        store.cancel_running(&holder_lease).await.unwrap();
        assert!(store
            .claim_chunk(ChunkScope::Any, "late-helper", LEASE)
            .await
            .unwrap()
            .is_none());
    }
}

#[tokio::test]
async fn retry_runs_only_the_failed_chunks_again() {
    for (store, _dir) in stores().await {
        let (audio, _) = store
            .ingest(&new_audio("c3"), &pipeline_jobs())
            .await
            .unwrap();
        let job = store.claim("holder", &[], LEASE).await.unwrap().unwrap();
        store.create_chunks(job.id, &SPANS, "cut").await.unwrap();
        for _ in 0..3 {
            let chunk = store
                .claim_chunk(ChunkScope::Job(job.id), "holder", LEASE)
                .await
                .unwrap()
                .unwrap();
            if chunk.index == 1 {
                // Permanent: no attempt is left for it.
                let status = store
                    .fail_chunk(&ChunkLease::of(&chunk), "undecodable packet", false, 3)
                    .await
                    .unwrap();
                assert_eq!(status, Some(ChunkStatus::Failed));
            } else {
                store
                    .complete_chunk(&ChunkLease::of(&chunk), "en", 1.0, Vec::new(), "done")
                    .await
                    .unwrap();
            }
        }
        store
            .fail(
                &Lease::of(&job),
                &pipeline_core::JobError::permanent("chunk 2 of 3 failed"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(store.job(job.id).await.unwrap().status, JobStatus::Failed);

        let retried = store.retry(audio.id, None).await.unwrap();
        assert!(retried.iter().any(|j| j.id == job.id));
        let chunks = store.chunks(job.id).await.unwrap();
        let statuses: Vec<ChunkStatus> = chunks.iter().map(|c| c.status).collect();
        assert_eq!(
            statuses,
            [
                ChunkStatus::Completed,
                ChunkStatus::Queued,
                ChunkStatus::Completed
            ]
        );
        assert_eq!(chunks[1].attempt, 0);
        assert_eq!(chunks[1].error, None);
        // The next holder finds only the failed chunk to do.
        let job = store.claim("next", &[], LEASE).await.unwrap().unwrap();
        let only = store
            .claim_chunk(ChunkScope::Job(job.id), "next", LEASE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(only.index, 1);
        assert!(store
            .claim_chunk(ChunkScope::Job(job.id), "next", LEASE)
            .await
            .unwrap()
            .is_none());
    }
}
