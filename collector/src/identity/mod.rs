//! Identity resolution and unified profiles: the identity graph, merge rules, profiles and their API.
//!
//! `engine` resolves identities in memory, `profile` aggregates what a person did, `db` keeps the
//! derived view on disk, `service` follows the store and serves reads, `api` is the HTTP surface.

pub mod api;
pub mod db;
pub mod engine;
pub mod ident;
pub mod input;
pub mod profile;
pub mod service;

pub use api::routes;
pub use engine::{Dropped, Engine, Erased, Merge};
pub use ident::{IdType, Identifier, IdentityConfig, IdentityFlags};
pub use input::EventInput;
pub use service::{Identity, Receipt};
