//! The metadata plane on openraft (to be built: issue #13).
