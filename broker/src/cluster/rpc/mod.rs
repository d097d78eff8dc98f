//! Typed messages between nodes over the cluster listener (to be built: issue #13).
