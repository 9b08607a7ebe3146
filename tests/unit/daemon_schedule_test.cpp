// Tamper coalescing, reload settling and housekeeping, driven by a fake timer.
#include <gtest/gtest.h>

#include <vector>

#include "jitd/daemon/schedule.hpp"

namespace jitd::daemon {
namespace {

using namespace std::chrono_literals;

class FakeTimer final : public Timer {
 public:
  std::vector<std::chrono::microseconds> arms;  // every arm() call, in order
  bool pending = false;

  void arm(std::chrono::microseconds delay) override {
    arms.push_back(delay);
    pending = true;
  }
  void disarm() override { pending = false; }
  [[nodiscard]] bool armed() const override { return pending; }
  // The loop runs the timer's handler: a one-shot timer is disarmed first.
  void fire() { pending = false; }
};

TEST(CoalescerTest, BurstOfEventsArmsTheTimerOnce) {
  FakeTimer timer;
  Coalescer coalescer(timer, 2ms);
  EXPECT_TRUE(coalescer.add()) << "the first event starts the burst";
  EXPECT_FALSE(coalescer.add());
  EXPECT_FALSE(coalescer.add());
  EXPECT_EQ(timer.arms, std::vector<std::chrono::microseconds>{2ms});
}

TEST(CoalescerTest, EventAfterTheActionStartsANewBurst) {
  FakeTimer timer;
  Coalescer coalescer(timer, 200ms);
  ASSERT_TRUE(coalescer.add());
  timer.fire();
  EXPECT_TRUE(coalescer.add());
  EXPECT_EQ(timer.arms, (std::vector<std::chrono::microseconds>{200ms, 200ms}));
}

TEST(CoalescerTest, SettlingCountsFromTheFirstEventNotTheLast) {
  // A steady trickle of writes must not postpone a reload for ever.
  FakeTimer timer;
  Coalescer coalescer(timer, 200ms);
  for (int i = 0; i < 100; ++i) coalescer.add();
  EXPECT_EQ(timer.arms.size(), 1u);
}

const core::Deadline now{std::chrono::hours(3)};

TEST(HousekeepingTest, RunsEverySecondWithoutGrants) {
  EXPECT_EQ(housekeeping_delay(std::nullopt, now), housekeeping_interval);
}

TEST(HousekeepingTest, RunsAtTheNextExpiry) {
  EXPECT_EQ(housekeeping_delay(now + 250ms, now), 250ms);
}

TEST(HousekeepingTest, NeverWaitsLongerThanTheInterval) {
  EXPECT_EQ(housekeeping_delay(now + std::chrono::hours(2), now), housekeeping_interval);
}

TEST(HousekeepingTest, OverdueExpiryRunsAfterOneMillisecondNotInABusyLoop) {
  EXPECT_EQ(housekeeping_delay(now - 5s, now), 1ms);
  EXPECT_EQ(housekeeping_delay(now, now), 1ms);
}

}  // namespace
}  // namespace jitd::daemon
