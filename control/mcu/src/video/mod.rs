//! The video composer.
