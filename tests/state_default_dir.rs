//! `State::default_dir`. Alone in its own test binary because it changes the environment, which
//! is only sound while no other thread reads it.

use std::path::Path;

use rosh::state::{State, StateError};

#[test]
fn default_dir_is_rosh_state_dir_then_home_dot_rosh() {
    // SAFETY: this binary runs this one test, on one thread.
    unsafe {
        std::env::set_var("ROSH_STATE_DIR", "/srv/rosh-state");
        std::env::set_var("HOME", "/home/operator");
    }
    assert_eq!(State::default_dir().unwrap(), Path::new("/srv/rosh-state"));

    unsafe { std::env::set_var("ROSH_STATE_DIR", "") };
    assert_eq!(State::default_dir().unwrap(), Path::new("/home/operator/.rosh"));

    unsafe {
        std::env::remove_var("ROSH_STATE_DIR");
        std::env::remove_var("HOME");
    }
    assert!(matches!(State::default_dir(), Err(StateError::NoStateDir)));
}
