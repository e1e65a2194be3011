//! Property tests of the pure core: intake never panics and names what it refuses, the traffic
//! switch only ever sends writers to the described primary, and the promoter's gates only let a
//! promotion through when each one passed or was legitimately forced.
//!
//! The strategies lean towards the shapes the functions are really sent (SNS records, alarms,
//! commands, observations with one primary), so the interesting branches are reached, and every
//! module checks that its generators do reach them.

mod intake;
mod promote;
mod strategies;
mod switch;
