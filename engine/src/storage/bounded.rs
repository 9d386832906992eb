//! An object store whose every call ends within a bound: the `object_store` client's own
//! timeout is per attempt (connect to the end of the body) and it retries for up to three
//! minutes, so a store that takes a request and never answers held a listing, a HEAD, a
//! whole-object read or an upload that long (issue 36, case 7). Each call made through
//! these wrappers is given, retries included:
//!
//! - the first-byte timeout when nothing but an answer is awaited (a HEAD, a GET until its
//!   answer begins, each page of a listing, a delete, starting or aborting an upload);
//! - the request timeout when the call carries a body the store must take first, or when
//!   the store may be slow to finish (a PUT, an upload's part, completing an upload, a
//!   server-side copy): the answer can only begin once the body is sent.
//!
//! Past its bound a call fails with `object_store::Error::Generic` whose store is
//! `NO_ANSWER`, saying which bound and which option changes it; callers name the object.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as Key;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartId, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result,
};

/// The `store` of the error a call past its bound returns (see `unanswered`).
pub const NO_ANSWER: &str = "no answer";

/// The two bounds of one location.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub first_byte: Duration,
    pub request: Duration,
}

impl Bounds {
    fn first_byte_error(&self) -> object_store::Error {
        object_store::Error::Generic {
            store: NO_ANSWER,
            source: format!(
                "no answer began within the first-byte timeout of {} (the store took the request and sent nothing; set the location's `first_byte_timeout=` for a slower store)",
                humantime::format_duration(self.first_byte)
            )
            .into(),
        }
    }

    fn request_error(&self) -> object_store::Error {
        object_store::Error::Generic {
            store: NO_ANSWER,
            source: format!(
                "no answer within the request timeout of {}, retries included (the store took the request and did not finish it; set the location's `timeout=` or PGDRILL_STORE_TIMEOUT for a slower store)",
                humantime::format_duration(self.request)
            )
            .into(),
        }
    }

    async fn first<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.first_byte, f).await.unwrap_or_else(|_| Err(self.first_byte_error()))
    }

    async fn whole<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.request, f).await.unwrap_or_else(|_| Err(self.request_error()))
    }

    /// A listing whose every page must begin within the first-byte timeout; the time the
    /// caller takes between items is not counted. After a timeout the listing ends.
    fn listing(self, inner: BoxStream<'static, Result<ObjectMeta>>) -> BoxStream<'static, Result<ObjectMeta>> {
        futures_util::stream::unfold(Some(inner), move |state| async move {
            let mut s = state?;
            match tokio::time::timeout(self.first_byte, s.next()).await {
                Ok(Some(item)) => Some((item, Some(s))),
                Ok(None) => None,
                Err(_) => Some((Err(self.first_byte_error()), None)),
            }
        })
        .boxed()
    }
}

/// Whether `e` is a call that ended at its bound (the store never answered).
pub fn unanswered(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::Generic { store, .. } if *store == NO_ANSWER)
}

/// `inner` with every call bounded.
pub struct Bounded<T: ?Sized> {
    inner: Arc<T>,
    bounds: Bounds,
}

impl<T: ?Sized> Bounded<T> {
    pub fn new(inner: Arc<T>, bounds: Bounds) -> Self {
        Bounded { inner, bounds }
    }
}

impl<T: ?Sized + std::fmt::Display> std::fmt::Display for Bounded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for Bounded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Bounded<dyn ObjectStore> {
    async fn put_opts(&self, location: &Key, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.bounds.whole(self.inner.put_opts(location, payload, opts)).await
    }

    async fn put_multipart_opts(&self, location: &Key, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        let up = self.bounds.first(self.inner.put_multipart_opts(location, opts)).await?;
        Ok(Box::new(BoundedUpload { inner: up, bounds: self.bounds }))
    }

    async fn get_opts(&self, location: &Key, options: GetOptions) -> Result<GetResult> {
        // Until the answer begins (its headers); the body is the client's per-request timeout.
        self.bounds.first(self.inner.get_opts(location, options)).await
    }

    async fn head(&self, location: &Key) -> Result<ObjectMeta> {
        self.bounds.first(self.inner.head(location)).await
    }

    async fn delete(&self, location: &Key) -> Result<()> {
        self.bounds.first(self.inner.delete(location)).await
    }

    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.bounds.listing(self.inner.list(prefix))
    }

    fn list_with_offset(&self, prefix: Option<&Key>, offset: &Key) -> BoxStream<'static, Result<ObjectMeta>> {
        self.bounds.listing(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Key>) -> Result<ListResult> {
        self.bounds.first(self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy(&self, from: &Key, to: &Key) -> Result<()> {
        self.bounds.whole(self.inner.copy(from, to)).await
    }

    async fn copy_if_not_exists(&self, from: &Key, to: &Key) -> Result<()> {
        self.bounds.whole(self.inner.copy_if_not_exists(from, to)).await
    }
}

#[async_trait::async_trait]
impl MultipartStore for Bounded<dyn MultipartStore> {
    async fn create_multipart(&self, path: &Key) -> Result<MultipartId> {
        self.bounds.first(self.inner.create_multipart(path)).await
    }

    async fn put_part(&self, path: &Key, id: &MultipartId, part_idx: usize, data: PutPayload) -> Result<PartId> {
        self.bounds.whole(self.inner.put_part(path, id, part_idx, data)).await
    }

    async fn complete_multipart(&self, path: &Key, id: &MultipartId, parts: Vec<PartId>) -> Result<PutResult> {
        self.bounds.whole(self.inner.complete_multipart(path, id, parts)).await
    }

    async fn abort_multipart(&self, path: &Key, id: &MultipartId) -> Result<()> {
        self.bounds.first(self.inner.abort_multipart(path, id)).await
    }
}

/// An upload started through `Bounded` (one with a storage class, which the multipart
/// calls that name an upload cannot carry): its parts and its end bounded the same way.
#[derive(Debug)]
struct BoundedUpload {
    inner: Box<dyn MultipartUpload>,
    bounds: Bounds,
}

#[async_trait::async_trait]
impl MultipartUpload for BoundedUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        let (part, bounds) = (self.inner.put_part(data), self.bounds);
        Box::pin(async move { bounds.whole(part).await })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.bounds.whole(self.inner.complete()).await
    }

    async fn abort(&mut self) -> Result<()> {
        self.bounds.first(self.inner.abort()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that takes every call and never answers any.
    #[derive(Debug)]
    struct Silent;

    impl std::fmt::Display for Silent {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("silent")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Silent {
        async fn put_opts(&self, _: &Key, _: PutPayload, _: PutOptions) -> Result<PutResult> {
            std::future::pending().await
        }
        async fn put_multipart_opts(&self, _: &Key, _: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
            std::future::pending().await
        }
        async fn get_opts(&self, _: &Key, _: GetOptions) -> Result<GetResult> {
            std::future::pending().await
        }
        async fn delete(&self, _: &Key) -> Result<()> {
            std::future::pending().await
        }
        fn list(&self, _: Option<&Key>) -> BoxStream<'static, Result<ObjectMeta>> {
            futures_util::stream::pending().boxed()
        }
        async fn list_with_delimiter(&self, _: Option<&Key>) -> Result<ListResult> {
            std::future::pending().await
        }
        async fn copy(&self, _: &Key, _: &Key) -> Result<()> {
            std::future::pending().await
        }
        async fn copy_if_not_exists(&self, _: &Key, _: &Key) -> Result<()> {
            std::future::pending().await
        }
    }

    /// Every call of a store that never answers ends at its bound, naming it, and a listing
    /// ends after its timeout rather than being polled again.
    #[tokio::test]
    async fn every_call_of_a_store_that_never_answers_ends_at_its_bound() {
        let bounds = Bounds { first_byte: Duration::from_millis(200), request: Duration::from_millis(700) };
        let inner: Arc<dyn ObjectStore> = Arc::new(Silent);
        let s = Bounded::new(inner, bounds);
        let k = Key::from("a/b");
        let first = |r: Result<()>| {
            let e = r.expect_err("bounded");
            assert!(unanswered(&e) && e.to_string().contains("first-byte timeout of 200ms"), "{e}");
        };
        let whole = |r: Result<()>| {
            let e = r.expect_err("bounded");
            assert!(unanswered(&e) && e.to_string().contains("request timeout of 700ms"), "{e}");
        };
        first(s.head(&k).await.map(|_| ()));
        first(s.get(&k).await.map(|_| ()));
        first(s.delete(&k).await);
        first(s.list_with_delimiter(None).await.map(|_| ()));
        first(s.put_multipart(&k).await.map(|_| ()));
        whole(s.put(&k, PutPayload::from_static(b"x")).await.map(|_| ()));
        whole(s.copy(&k, &k).await);
        let mut l = s.list(None);
        first(l.next().await.expect("an error, not the end").map(|_| ()));
        assert!(l.next().await.is_none(), "the listing ended");
    }
}
