//! `RedisLimits` against the limit-backend contracts, on the caller's clock (so the contracts
//! drive time) and failing closed (so a Redis failure fails the test rather than passing
//! through the fallback). Needs Redis (`NEXORA_TEST_REDIS_URL`, skipped loudly when absent
//! unless `NEXORA_REQUIRE_REDIS=1`).

use nexora_auth_redis::{Outage, RedisConfig, RedisLimits, TimeSource};
use nexora_auth_testkit::{Fixture, redis::TestRedis};

nexora_auth_testkit::limit_backend_conformance!(async {
    let Some(redis) = TestRedis::create().await else {
        return Fixture::skipped();
    };
    let connection = RedisConfig::new(redis.url())
        .key_prefix(redis.prefix())
        .time_source(TimeSource::Caller)
        .connect()
        .expect("a valid Redis configuration");
    Fixture::new(RedisLimits::new(connection).on_outage(Outage::FailClosed)).with_guard(redis)
});
