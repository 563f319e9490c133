//! Where a day's files go: a local directory (temporary name, then
//! rename) or an S3 bucket (a local staging file, then one `PutObject`).
//!
//! S3 objects are uploaded with a single `PutObject` each, which S3 accepts
//! up to 5 GiB; a VEN-day is far below that (a reading per second of 20
//! series is 1.7 M rows, about 10 MB of Parquet), so there is no multipart
//! upload.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

use super::{ExportError, MANIFEST_NAME, Manifest, Output};

/// A day's destination.
#[derive(Debug, Clone)]
pub enum Destination {
    /// `<root>/<day>/...` on the local file system.
    Directory(PathBuf),
    /// `s3://<bucket>/<prefix><day>/...`.
    S3 {
        /// The S3 client.
        client: Client,
        /// The bucket.
        bucket: String,
        /// The key prefix, empty or ending in `/`.
        prefix: String,
    },
}

/// Where a run writes its files before they are published.
#[derive(Debug)]
pub(crate) struct Staging {
    dir: PathBuf,
    /// The local staging directory of an S3 run (removed when dropped).
    _temp: Option<tempfile::TempDir>,
    /// Whether staged names are hidden temporary names in the final
    /// directory.
    in_place: bool,
}

impl Staging {
    /// Where the file `name` is written before [`Destination::commit_file`].
    pub(crate) fn path_for(&self, name: &str) -> PathBuf {
        if self.in_place {
            self.dir.join(format!(".{name}.tmp"))
        } else {
            self.dir.join(name)
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Destination {
    /// The destination `output` names. S3 uses the standard AWS
    /// configuration chain (environment, profile, ECS task role, instance
    /// role) for credentials and region; `endpoint_url`, if not empty,
    /// replaces the S3 endpoint and turns on path-style addressing.
    pub async fn open(output: &Output, endpoint_url: &str) -> Result<Self, ExportError> {
        match output {
            Output::Directory(root) => Ok(Self::Directory(root.clone())),
            Output::S3 { bucket, prefix } => {
                let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .http_client(crate::aws::http_client())
                    .load()
                    .await;
                let mut config = aws_sdk_s3::config::Builder::from(&shared)
                    .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                    .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
                if !endpoint_url.is_empty() {
                    config = config.endpoint_url(endpoint_url).force_path_style(true);
                }
                Ok(Self::S3 {
                    client: Client::from_conf(config.build()),
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                })
            }
        }
    }

    fn day_key(prefix: &str, day: &str, name: &str) -> String {
        format!("{prefix}{day}/{name}")
    }

    /// Prepares a run of `day`: creates the day's directory (or checks the
    /// bucket) and removes the old manifest, so no reader takes the day
    /// for complete while it is rewritten.
    pub(crate) async fn begin_day(&self, day: &str) -> Result<Staging, ExportError> {
        match self {
            Self::Directory(root) => {
                let dir = root.join(day);
                tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
                let manifest = dir.join(MANIFEST_NAME);
                match tokio::fs::remove_file(&manifest).await {
                    Ok(()) => sync_dir(&dir).await?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&manifest)(e)),
                }
                Ok(Staging {
                    dir,
                    _temp: None,
                    in_place: true,
                })
            }
            Self::S3 {
                client,
                bucket,
                prefix,
            } => {
                let key = Self::day_key(prefix, day, MANIFEST_NAME);
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| s3_error("DeleteObject", bucket, &key, &e))?;
                let temp = tempfile::Builder::new()
                    .prefix("gridlink-export-")
                    .tempdir()
                    .map_err(io(Path::new("temporary directory")))?;
                Ok(Staging {
                    dir: temp.path().to_path_buf(),
                    _temp: Some(temp),
                    in_place: false,
                })
            }
        }
    }

    /// Publishes the staged file as `name` in the day (rename over the old
    /// one, or upload).
    pub(crate) async fn commit_file(
        &self,
        day: &str,
        staged: &Path,
        name: &str,
    ) -> Result<(), ExportError> {
        match self {
            Self::Directory(root) => {
                let dir = root.join(day);
                let target = dir.join(name);
                // Durable once `write_manifest` syncs the directory.
                tokio::fs::rename(staged, &target)
                    .await
                    .map_err(io(&target))
            }
            Self::S3 {
                client,
                bucket,
                prefix,
            } => {
                let key = Self::day_key(prefix, day, name);
                let body = ByteStream::from_path(staged).await.map_err(|e| {
                    io(staged)(std::io::Error::other(DisplayErrorContext(e).to_string()))
                })?;
                let content_type = if name.ends_with(super::ExportFormat::Parquet.extension()) {
                    "application/vnd.apache.parquet"
                } else {
                    "application/gzip"
                };
                client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .content_type(content_type)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| s3_error("PutObject", bucket, &key, &e))?;
                tokio::fs::remove_file(staged).await.map_err(io(staged))
            }
        }
    }

    /// Deletes the day's export files (`*.parquet`, `*.csv.gz`, and
    /// temporary files of an interrupted run) not in `keep`; returns their
    /// names.
    pub(crate) async fn remove_stale(
        &self,
        day: &str,
        keep: &BTreeSet<String>,
    ) -> Result<Vec<String>, ExportError> {
        let stale = |name: &str| !keep.contains(name) && is_export_file(name);
        let mut removed = Vec::new();
        match self {
            Self::Directory(root) => {
                let dir = root.join(day);
                let mut entries = tokio::fs::read_dir(&dir).await.map_err(io(&dir))?;
                while let Some(entry) = entries.next_entry().await.map_err(io(&dir))? {
                    let Ok(name) = entry.file_name().into_string() else {
                        continue;
                    };
                    if stale(&name) {
                        let path = entry.path();
                        tokio::fs::remove_file(&path).await.map_err(io(&path))?;
                        removed.push(name);
                    }
                }
            }
            Self::S3 {
                client,
                bucket,
                prefix,
            } => {
                let day_prefix = Self::day_key(prefix, day, "");
                let mut pages = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(&day_prefix)
                    .into_paginator()
                    .send();
                let mut keys = Vec::new();
                while let Some(page) = pages.next().await {
                    let page =
                        page.map_err(|e| s3_error("ListObjectsV2", bucket, &day_prefix, &e))?;
                    for object in page.contents() {
                        if let Some(key) = object.key() {
                            keys.push(key.to_owned());
                        }
                    }
                }
                for key in keys {
                    let name = &key[day_prefix.len()..];
                    if name.contains('/') || !stale(name) {
                        continue;
                    }
                    client
                        .delete_object()
                        .bucket(bucket)
                        .key(&key)
                        .send()
                        .await
                        .map_err(|e| s3_error("DeleteObject", bucket, &key, &e))?;
                    removed.push(name.to_owned());
                }
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// Writes the day's manifest (last).
    pub(crate) async fn write_manifest(
        &self,
        day: &str,
        manifest: &Manifest,
    ) -> Result<(), ExportError> {
        let mut json = serde_json::to_vec_pretty(manifest)
            .map_err(|e| ExportError::Writer(format!("manifest: {e}")))?;
        json.push(b'\n');
        match self {
            Self::Directory(root) => {
                let dir = root.join(day);
                // The data files' renames and the deletions first.
                sync_dir(&dir).await?;
                let temp = dir.join(format!(".{MANIFEST_NAME}.tmp"));
                let target = dir.join(MANIFEST_NAME);
                let file = temp.clone();
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    use std::io::Write as _;
                    let mut out = std::fs::File::create(&file)?;
                    out.write_all(&json)?;
                    out.sync_all()
                })
                .await
                .map_err(|e| ExportError::Writer(e.to_string()))?
                .map_err(io(&temp))?;
                tokio::fs::rename(&temp, &target)
                    .await
                    .map_err(io(&target))?;
                sync_dir(&dir).await
            }
            Self::S3 {
                client,
                bucket,
                prefix,
            } => {
                let key = Self::day_key(prefix, day, MANIFEST_NAME);
                client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .content_type("application/json")
                    .body(ByteStream::from(json))
                    .send()
                    .await
                    .map_err(|e| s3_error("PutObject", bucket, &key, &e))?;
                Ok(())
            }
        }
    }
}

/// A name the export writes: a VEN file, or a temporary file of an
/// interrupted run.
#[expect(
    clippy::case_sensitive_file_extension_comparisons,
    reason = "only names this module wrote, always in lower case, are removed"
)]
fn is_export_file(name: &str) -> bool {
    name.ends_with(".parquet")
        || name.ends_with(".csv.gz")
        || (name.starts_with('.') && name.ends_with(".tmp"))
}

/// Makes renames and deletions in `dir` durable.
async fn sync_dir(dir: &Path) -> Result<(), ExportError> {
    let path = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&path)?.sync_all())
        .await
        .map_err(|e| ExportError::Writer(e.to_string()))?
        .map_err(io(dir))
}

fn s3_error<E: std::error::Error>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    error: &E,
) -> ExportError {
    ExportError::S3 {
        operation,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message: DisplayErrorContext(error).to_string(),
    }
}
