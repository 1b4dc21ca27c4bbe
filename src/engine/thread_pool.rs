//! A fixed pool of worker threads fed by a bounded queue. The pool never grows: at most
//! `threads` clients are served at once, `threads` more wait in the queue, and the accept
//! loop blocks (leaving the rest in the kernel backlog) while the queue is full.

use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use super::blocking::{BlockingListener, accept, label_for, serve_blocking};
use crate::service::Service;
use rustls::ServerConfig;

/// An accepted client, and its listener's TLS configuration if it is an HTTPS one.
type Job = (TcpStream, SocketAddr, Option<Arc<ServerConfig>>);

pub fn run(listeners: Vec<BlockingListener>, service: &Service, threads: usize) -> ! {
    let (queue, jobs) = sync_channel::<Job>(threads);
    let jobs = Arc::new(Mutex::new(jobs));
    thread::scope(|scope| {
        for _ in 0..threads {
            let jobs = Arc::clone(&jobs);
            scope.spawn(move || work(&jobs, service));
        }
        // This thread accepts from the first listener, a thread each from any others, all
        // feeding the one queue.
        let mut listeners = listeners.into_iter();
        let first = listeners.next().expect("at least one listener");
        for listener in listeners {
            let queue = queue.clone();
            scope.spawn(move || accept_into(&listener, &queue));
        }
        accept_into(&first, &queue);
    });
    unreachable!("accepting never ends")
}

fn accept_into(listener: &BlockingListener, queue: &SyncSender<Job>) {
    loop {
        let (stream, peer) = accept(&listener.listener);
        if queue.send((stream, peer, listener.tls.clone())).is_err() {
            unreachable!("workers never exit while the queue is open");
        }
    }
}

fn work(jobs: &Mutex<Receiver<Job>>, service: &Service) {
    loop {
        // The lock is held only to take a job, not while serving it.
        let job = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
        match job {
            Ok((stream, peer, tls)) => {
                let label = label_for(&stream);
                serve_blocking(stream, label, peer, service, tls.as_ref())
            }
            Err(_) => return,
        }
    }
}
