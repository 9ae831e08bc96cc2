use super::RedisSource;
