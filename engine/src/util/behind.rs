//! A writer whose writes happen on a thread of its own.

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Writes handed to a thread of its own, so the caller's thread (decrypting and
/// decompressing a backup) and the writing (a staged dump into /dev/shm or a disk, and its
/// data offsets followed as it passes) each take a core: a 2.5 GB dump was staged on one
/// thread doing both (issue 41). Each write is copied into a buffer (recycled) and queued, at
/// most a few MiB ahead. The first error of the inner writer ends the thread; the next write,
/// or `finish`, returns it.
pub struct Behind<W: Write + Send + 'static> {
    queue: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<W>>>,
    failed: Option<(io::ErrorKind, String)>,
}

/// Buffers queued ahead of the writing thread.
const AHEAD: usize = 4;

impl<W: Write + Send + 'static> Behind<W> {
    pub fn new(mut inner: W) -> Self {
        let (queue, queued) = sync_channel::<Vec<u8>>(AHEAD);
        let (recycle, spare) = sync_channel::<Vec<u8>>(AHEAD + 2);
        let thread = std::thread::spawn(move || {
            for mut buf in queued {
                inner.write_all(&buf)?;
                buf.clear();
                let _ = recycle.try_send(buf);
            }
            inner.flush()?;
            Ok(inner)
        });
        Behind { queue: Some(queue), spare, thread: Some(thread), failed: None }
    }

    /// Every write written and flushed: the inner writer, or the first error.
    pub fn finish(mut self) -> io::Result<W> {
        self.queue = None;
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(io::Error::other("the writing thread panicked"))),
            None => Err(self.error()),
        }
    }

    /// The writing thread's error, once it has ended (kept for later calls).
    fn error(&mut self) -> io::Error {
        if self.failed.is_none() {
            self.queue = None;
            let e = match self.thread.take().map(|t| t.join()) {
                Some(Ok(Err(e))) => e,
                Some(Err(_)) => io::Error::other("the writing thread panicked"),
                _ => io::Error::other("the writing thread ended"),
            };
            self.failed = Some((e.kind(), e.to_string()));
        }
        let (kind, text) = self.failed.clone().unwrap_or((io::ErrorKind::Other, String::new()));
        io::Error::new(kind, text)
    }
}

impl<W: Write + Send + 'static> Write for Behind<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let mut buf = self.spare.try_recv().unwrap_or_default();
        buf.extend_from_slice(data);
        match self.queue.as_ref().map(|q| q.send(buf)) {
            Some(Ok(())) => Ok(data.len()),
            _ => Err(self.error()),
        }
    }

    /// Nothing to do here: `finish` flushes the inner writer once every write is done.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for Behind<W> {
    /// Not finished (an error above): the thread writes what was queued and ends before the
    /// caller removes what it wrote into.
    fn drop(&mut self) {
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_arrives_in_order_and_an_inner_error_is_returned_by_a_later_write_or_finish() {
        let mut w = Behind::new(Vec::new());
        for i in 0..100u8 {
            w.write_all(&[i; 1000]).expect("write");
        }
        let out = w.finish().expect("finished");
        assert_eq!(out.len(), 100_000);
        assert!(out.chunks(1000).enumerate().all(|(i, c)| c.iter().all(|b| *b == i as u8)));

        /// Fails from its third write on, like a disk that fills.
        struct Full(usize);
        impl Write for Full {
            fn write(&mut self, d: &[u8]) -> io::Result<usize> {
                self.0 += 1;
                if self.0 > 2 {
                    return Err(io::Error::new(io::ErrorKind::StorageFull, "No space left on device"));
                }
                Ok(d.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = Behind::new(Full(0));
        let failed = (0..50).map(|_| w.write_all(&[0; 100])).find_map(Result::err);
        let e = match failed {
            Some(e) => e,
            None => w.finish().err().expect("the inner error at the end"),
        };
        assert!(e.to_string().contains("No space left on device"), "{e}");
    }
}
