//! Identity resolution and unified profiles: the identity graph, merge rules, profiles and their API.
