//! The img3d client library.
