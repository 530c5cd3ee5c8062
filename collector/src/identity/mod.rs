//! Identity resolution and unified profiles: the identity graph, merge rules, profiles and their API.

pub mod engine;
pub mod ident;
pub mod input;
pub mod profile;

pub use engine::{Dropped, Engine, Erased, Merge};
pub use ident::{IdType, Identifier, IdentityConfig};
pub use input::EventInput;
