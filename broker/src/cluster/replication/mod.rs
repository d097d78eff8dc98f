//! Partition replication, leader → followers by follower fetch (to be built: issue #13).
