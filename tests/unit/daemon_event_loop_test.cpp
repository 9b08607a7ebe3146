// The RAII layer over sd-event, against the real sd-event (no kernel enforcement involved).
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>

#include "jitd/daemon/event_loop.hpp"

namespace jitd::daemon {
namespace {

using namespace std::chrono_literals;

bool is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

struct Pipe {
  int read_end = -1;
  int write_end = -1;
  Pipe() {
    int ends[2];
    EXPECT_EQ(pipe2(ends, O_CLOEXEC | O_NONBLOCK), 0);
    read_end = ends[0];
    write_end = ends[1];
  }
  ~Pipe() { close(write_end); }
};

std::unique_ptr<EventLoop> make_loop() {
  auto loop = EventLoop::create();
  EXPECT_TRUE(loop.has_value()) << loop.error().message;
  return std::move(*loop);
}

TEST(EventLoopTest, OwnedDescriptorIsClosedOnlyAfterItsSourceIsGone) {
  Pipe pipe;
  auto loop = make_loop();
  ASSERT_TRUE(loop->on_io(sys::UniqueFd(pipe.read_end), EPOLLIN, "pipe", [](std::uint32_t) {}));
  EXPECT_TRUE(is_open(pipe.read_end)) << "the source owns the descriptor while it watches it";
  loop.reset();
  EXPECT_FALSE(is_open(pipe.read_end)) << "the loop's source closes what it owns";
}

TEST(EventLoopTest, BorrowedDescriptorOutlivesTheLoop) {
  Pipe pipe;
  auto loop = make_loop();
  ASSERT_TRUE(loop->on_io(pipe.read_end, EPOLLIN, "pipe", [](std::uint32_t) {}));
  loop.reset();
  EXPECT_TRUE(is_open(pipe.read_end));
  close(pipe.read_end);
}

TEST(EventLoopTest, ReadableDescriptorCallsItsHandler) {
  Pipe pipe;
  auto loop = make_loop();
  std::string got;
  ASSERT_TRUE(loop->on_io(sys::UniqueFd(pipe.read_end), EPOLLIN, "pipe", [&](std::uint32_t events) {
    char buffer[16];
    const auto n = read(pipe.read_end, buffer, sizeof buffer);
    got.assign(buffer, static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
    EXPECT_TRUE(events & EPOLLIN);
    loop->exit(7);
  }));
  ASSERT_EQ(write(pipe.write_end, "ping", 4), 4);
  EXPECT_EQ(loop->run(), 7);
  EXPECT_EQ(got, "ping");
}

TEST(EventLoopTest, TimerFiresOnceAndCanBeRearmedFromItsHandler) {
  auto loop = make_loop();
  int fired = 0;
  std::unique_ptr<Timer> timer;
  auto made = loop->make_timer("test timer", [&] {
    EXPECT_FALSE(timer->armed()) << "a one-shot timer is disarmed when it fires";
    if (++fired == 3) {
      loop->exit(0);
      return;
    }
    timer->arm(1ms);
  });
  ASSERT_TRUE(made.has_value()) << made.error().message;
  timer = std::move(*made);
  EXPECT_FALSE(timer->armed()) << "a new timer waits to be armed";
  timer->arm(0us);
  EXPECT_TRUE(timer->armed());
  EXPECT_EQ(loop->run(), 0);
  EXPECT_EQ(fired, 3);
}

TEST(EventLoopTest, DisarmedTimerDoesNotFire) {
  auto loop = make_loop();
  bool disarmed_fired = false;
  auto disarmed = loop->make_timer("disarmed", [&] { disarmed_fired = true; });
  auto stop = loop->make_timer("stop", [&] { loop->exit(0); });
  ASSERT_TRUE(disarmed && stop);
  (*disarmed)->arm(0us);
  (*disarmed)->disarm();
  (*stop)->arm(5ms);
  EXPECT_EQ(loop->run(), 0);
  EXPECT_FALSE(disarmed_fired);
}

TEST(EventLoopTest, HandlerExceptionIsContainedAndTheLoopGoesOn) {
  auto loop = make_loop();
  int thrown = 0;
  auto failing = loop->make_timer("failing", [&] {
    ++thrown;
    throw std::runtime_error("handler bug");
  });
  auto stop = loop->make_timer("stop", [&] { loop->exit(3); });
  ASSERT_TRUE(failing && stop);
  (*failing)->arm(0us);
  (*stop)->arm(2ms);
  EXPECT_EQ(loop->run(), 3);
  EXPECT_EQ(thrown, 1);
}

TEST(EventLoopTest, WatchWaitsForTheEventsItIsSetTo) {
  Pipe pipe;
  auto loop = make_loop();
  std::uint32_t seen = 0;
  // The write end of an empty pipe is writable, never readable.
  auto watch = loop->watch_io(pipe.write_end, EPOLLIN, "pipe", [&](std::uint32_t events) {
    seen = events;
    loop->exit(0);
  });
  ASSERT_TRUE(watch.has_value()) << watch.error().message;
  auto stop = loop->make_timer("stop", [&] { loop->exit(1); });
  ASSERT_TRUE(stop.has_value());
  (*stop)->arm(20ms);
  EXPECT_EQ(loop->run(), 1) << "not readable: the handler must not run";

  auto loop2 = make_loop();
  auto changed = loop2->watch_io(pipe.write_end, EPOLLIN, "pipe", [&](std::uint32_t events) {
    seen = events;
    loop2->exit(0);
  });
  ASSERT_TRUE(changed.has_value());
  (*changed)->set_events(EPOLLOUT);
  EXPECT_EQ(loop2->run(), 0);
  EXPECT_TRUE(seen & EPOLLOUT);
  close(pipe.read_end);
}

TEST(EventLoopTest, StoppedWatchIsQuietAndLeavesItsDescriptorOpen) {
  Pipe pipe;
  auto loop = make_loop();
  int fired = 0;
  std::unique_ptr<IoWatch> watch;
  auto made = loop->watch_io(pipe.read_end, EPOLLIN, "pipe", [&](std::uint32_t) {
    ++fired;
    watch->stop();  // from its own handler, as libcurl's CURL_POLL_REMOVE does
  });
  ASSERT_TRUE(made.has_value()) << made.error().message;
  watch = std::move(*made);
  auto stop = loop->make_timer("stop", [&] { loop->exit(0); });
  ASSERT_TRUE(stop.has_value());
  (*stop)->arm(20ms);
  ASSERT_EQ(write(pipe.write_end, "x", 1), 1);
  EXPECT_EQ(loop->run(), 0);
  EXPECT_EQ(fired, 1) << "level-triggered: a watch still on would fire on every turn";
  watch.reset();
  EXPECT_TRUE(is_open(pipe.read_end));
  close(pipe.read_end);
}

TEST(EventLoopTest, WatchdogIsOffWithoutSystemd) {
  unsetenv("WATCHDOG_USEC");
  auto loop = make_loop();
  const auto enabled = loop->enable_watchdog();
  ASSERT_TRUE(enabled.has_value()) << enabled.error().message;
  EXPECT_FALSE(*enabled);
}

}  // namespace
}  // namespace jitd::daemon
