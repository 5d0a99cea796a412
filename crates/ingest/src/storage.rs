//! Where audio and outputs live: the local data directory by default, or an
//! S3-compatible object store shared by every machine (`storage.url =
//! "s3://bucket/prefix"`), both through the `object_store` crate. Audio is
//! content-addressed (`audio/<first two hex>/<sha256>.<ext>`), so a copy
//! downloaded once is valid forever and uploads of known content are skipped.

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// `storage.*` settings do not describe a usable store.
    #[error("storage.url {url}: {message}")]
    Config { url: String, message: String },
    /// The object is not in the store.
    #[error("{location}: not found in storage")]
    Missing { location: String },
    /// Reading, writing or reaching the store failed.
    #[error("{location}: {message}")]
    Io { location: String, message: String },
}

impl StorageError {
    /// Whether trying again later may succeed (a network blip, a full disk).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::Io { .. })
    }
}

/// An S3-compatible store's settings.
#[derive(Debug, Clone, Default)]
pub struct ObjectStoreSettings {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// Endpoint of a non-AWS store (MinIO, moto, Ceph); `http://` allowed.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// Audio and outputs, on local disk or in an object store.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Keys live under this prefix of the store.
    prefix: String,
    /// The data directory when the store is local: keys are files under it.
    local_root: Option<PathBuf>,
    /// Downloaded copies of remote audio, for the decoder.
    cache: PathBuf,
    /// For messages: the directory or the URL.
    description: String,
}

impl Storage {
    /// Storage in the local data directory.
    pub fn local(data_dir: &Path) -> Result<Self, StorageError> {
        fs::create_dir_all(data_dir).map_err(|e| StorageError::Io {
            location: data_dir.display().to_string(),
            message: e.to_string(),
        })?;
        let store =
            LocalFileSystem::new_with_prefix(data_dir).map_err(|e| StorageError::Config {
                url: data_dir.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(Self {
            store: Arc::new(store),
            prefix: String::new(),
            local_root: Some(data_dir.to_path_buf()),
            cache: data_dir.join("cache"),
            description: data_dir.display().to_string(),
        })
    }

    /// Storage in an S3-compatible object store; downloads are cached
    /// under `<data_dir>/cache`.
    pub fn object_store(
        settings: &ObjectStoreSettings,
        data_dir: &Path,
    ) -> Result<Self, StorageError> {
        let config_error = |message: String| StorageError::Config {
            url: pipeline_core::config::mask_url(&settings.url),
            message,
        };
        let rest = settings
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| config_error("only s3://bucket/prefix URLs are supported".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(config_error("no bucket name".into()));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&settings.region);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(key) = &settings.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| config_error(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_string(),
            local_root: None,
            cache: data_dir.join("cache"),
            description: pipeline_core::config::mask_url(&settings.url),
        })
    }

    /// The storage key of content with this digest and file extension.
    pub fn key_for(sha256: &str, extension: &str) -> String {
        let prefix = sha256.get(..2).unwrap_or("00");
        let ext: String = extension
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        if ext.is_empty() {
            format!("audio/{prefix}/{sha256}")
        } else {
            format!("audio/{prefix}/{sha256}.{ext}")
        }
    }

    /// The directory or URL, for messages and `status`.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Whether keys are files on this machine.
    pub fn is_local(&self) -> bool {
        self.local_root.is_some()
    }

    fn location(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn io_error(&self, key: &str, e: impl std::fmt::Display) -> StorageError {
        StorageError::Io {
            location: format!("{}/{key}", self.description.trim_end_matches('/')),
            message: e.to_string(),
        }
    }

    /// Stores a file under `key` unless the same content is already there,
    /// streaming it (a large file is never whole in memory).
    pub async fn put_file(&self, key: &str, source: &Path) -> Result<(), StorageError> {
        let location = self.location(key);
        if self.store.head(&location).await.is_ok() {
            return Ok(());
        }
        let mut file = tokio::fs::File::open(source)
            .await
            .map_err(|e| StorageError::Io {
                location: source.display().to_string(),
                message: e.to_string(),
            })?;
        // BufWriter uploads in parts and only makes the object visible on
        // shutdown, so a crash never leaves half a file under the key.
        let mut writer = BufWriter::new(self.store.clone(), location);
        if let Err(e) = tokio::io::copy(&mut file, &mut writer).await {
            let _ = writer.abort().await;
            return Err(self.io_error(key, e));
        }
        writer.shutdown().await.map_err(|e| self.io_error(key, e))
    }

    /// Stores `bytes` under `key`.
    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.store
            .put(&self.location(key), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.io_error(key, e))
    }

    /// A local file with the content of `key`: the file itself on local
    /// storage, else a cached download (content-addressed keys never change).
    pub async fn local_copy(&self, key: &str) -> Result<PathBuf, StorageError> {
        if let Some(root) = &self.local_root {
            let path = root.join(key);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(StorageError::Missing {
                    location: path.display().to_string(),
                })
            };
        }
        let target = self.cache.join(key);
        if target.is_file() {
            // Its time of last use, which the cache's pruning goes by.
            if let Ok(file) = std::fs::File::options().write(true).open(&target) {
                let _ = file.set_modified(std::time::SystemTime::now());
            }
            return Ok(target);
        }
        let got = match self.store.get(&self.location(key)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::Missing {
                    location: format!("{}/{key}", self.description.trim_end_matches('/')),
                })
            }
            Err(e) => return Err(self.io_error(key, e)),
        };
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| self.io_error(key, e))?;
        }
        let partial = target.with_extension(format!("partial-{}", uuid::Uuid::new_v4().simple()));
        let result = async {
            let mut file = tokio::fs::File::create(&partial).await?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(io::Error::other)?;
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            tokio::fs::rename(&partial, &target).await
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(self.io_error(key, e));
        }
        Ok(target)
    }

    /// Deletes the cached downloads (and abandoned partial ones) of an
    /// object store that were last used longer than `unused_for` ago; the
    /// number of files deleted. Local storage has no cache.
    pub fn prune_cache(&self, unused_for: std::time::Duration) -> u64 {
        if self.local_root.is_some() {
            return 0;
        }
        let Some(cutoff) = std::time::SystemTime::now().checked_sub(unused_for) else {
            return 0;
        };
        let mut removed = 0;
        let mut folders = vec![self.cache.clone()];
        while let Some(folder) = folders.pop() {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    folders.push(entry.path());
                } else if meta.modified().is_ok_and(|m| m < cutoff)
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Removes a stored object; a missing one is not an error.
    pub async fn remove(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&self.location(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.io_error(key, e)),
        }
    }
}

/// Writes `contents` to `path` through a temporary file and a rename, so
/// that readers never see half a file and a redelivered job overwrites cleanly.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let partial = path.with_extension(format!(
        "{}.partial-{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    fs::write(&partial, contents)?;
    fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cached downloads unused for longer than the retention are deleted;
    /// one used since (its cached copy served) is kept, however old.
    #[tokio::test]
    async fn the_cache_keeps_what_was_used_lately() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ObjectStoreSettings {
            url: "s3://bucket/prefix".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: "us-east-1".into(),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
        };
        let storage = Storage::object_store(&settings, dir.path()).unwrap();
        let cache = dir.path().join("cache/audio/ab");
        fs::create_dir_all(&cache).unwrap();
        let two_days_ago =
            std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
        for name in ["old.wav", "used.wav", "old.partial-1"] {
            let path = cache.join(name);
            fs::write(&path, b"RIFF").unwrap();
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(two_days_ago)
                .unwrap();
        }
        fs::write(cache.join("new.wav"), b"RIFF").unwrap();
        // Served from the cache (no request reaches the unreachable store).
        let used = storage.local_copy("audio/ab/used.wav").await.unwrap();
        assert_eq!(used, cache.join("used.wav"));
        let removed = storage.prune_cache(std::time::Duration::from_secs(86_400));
        assert_eq!(removed, 2);
        let mut left: Vec<String> = fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["new.wav", "used.wav"]);
        let local = Storage::local(dir.path()).unwrap();
        assert_eq!(
            local.prune_cache(std::time::Duration::ZERO),
            0,
            "local storage has no cache"
        );
    }

    #[tokio::test]
    async fn local_storage_keeps_the_data_dir_layout() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let source = dir.path().join("in.wav");
        fs::write(&source, b"RIFF....").unwrap();
        let key = Storage::key_for("abcdef", "WAV");
        assert_eq!(key, "audio/ab/abcdef.wav");
        storage.put_file(&key, &source).await.unwrap();
        let path = storage.local_copy(&key).await.unwrap();
        assert_eq!(path, dir.path().join("audio/ab/abcdef.wav"));
        assert_eq!(fs::read(&path).unwrap(), b"RIFF....");
        storage.remove(&key).await.unwrap();
        assert!(matches!(
            storage.local_copy(&key).await,
            Err(StorageError::Missing { .. })
        ));
    }

    #[test]
    fn object_store_urls_must_name_a_bucket() {
        let dir = tempfile::tempdir().unwrap();
        for url in ["s3://", "gs://bucket/x"] {
            let settings = ObjectStoreSettings {
                url: url.into(),
                region: "us-east-1".into(),
                ..ObjectStoreSettings::default()
            };
            assert!(
                Storage::object_store(&settings, dir.path()).is_err(),
                "{url}"
            );
        }
    }
}
