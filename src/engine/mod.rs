//! Engines: the shells that move bytes between sockets and a [`crate::connection::Connection`].
//! The event loop is the default and the point of the project.

pub mod event_loop;
