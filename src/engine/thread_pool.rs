//! A fixed pool of worker threads fed by a bounded queue. The pool never grows: at most
//! `threads` clients are served at once, `threads` more wait in the queue, and the accept
//! loop blocks (leaving the rest in the kernel backlog) while the queue is full.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use super::blocking::{accept, serve_blocking};
use crate::connection::Site;

pub fn run(listener: TcpListener, site: &Site, threads: usize) -> ! {
    let (queue, jobs) = sync_channel::<(TcpStream, SocketAddr)>(threads);
    let jobs = Arc::new(Mutex::new(jobs));
    thread::scope(|scope| {
        for _ in 0..threads {
            let jobs = Arc::clone(&jobs);
            scope.spawn(move || work(&jobs, site));
        }
        loop {
            let accepted = accept(&listener);
            if queue.send(accepted).is_err() {
                unreachable!("workers never exit while the queue is open");
            }
        }
    })
}

fn work(jobs: &Mutex<Receiver<(TcpStream, SocketAddr)>>, site: &Site) {
    loop {
        // The lock is held only to take a job, not while serving it.
        let job = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
        match job {
            Ok((stream, peer)) => serve_blocking(stream, peer, site),
            Err(_) => return,
        }
    }
}
