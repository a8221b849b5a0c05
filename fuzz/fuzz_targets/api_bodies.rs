//! API request bodies (users, machines, resources, access requests and their
//! decisions, training) from arbitrary bytes, as the server's JSON extractor
//! reads them.
//!
//! Properties: it never panics; a body that is accepted serializes back to
//! JSON that is accepted again as the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_api::{
    AdvanceClock, Approval, CreateMachine, CreateRequest, CreateResource, CreateTrainingModule,
    CreateUser, RecordTraining, Refusal,
};
use serde::{Serialize, de::DeserializeOwned};

fn check<T>(data: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let json = serde_json::to_vec(&value).expect("an accepted body serializes");
        let again = serde_json::from_slice::<T>(&json).unwrap_or_else(|e| {
            panic!(
                "re-serialized body {:?} is refused: {e}",
                String::from_utf8_lossy(&json)
            )
        });
        assert_eq!(value, again, "body does not round-trip");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<CreateUser>(data);
    check::<CreateMachine>(data);
    check::<CreateResource>(data);
    check::<CreateRequest>(data);
    check::<Approval>(data);
    check::<Refusal>(data);
    check::<CreateTrainingModule>(data);
    check::<RecordTraining>(data);
    check::<AdvanceClock>(data);
});
