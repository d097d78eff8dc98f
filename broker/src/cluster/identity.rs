//! Which cluster and which node a data directory belongs to (to be built: issue #13).
