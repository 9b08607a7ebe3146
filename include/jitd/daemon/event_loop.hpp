#pragma once
// A thin RAII layer over sd-event: the one loop that owns jitd's state. Every source has a
// description (shown by sd-event's debug logging), a C++ callback instead of a static
// function casting `void*` back, and one owner: the loop, or the Timer returned to the caller.
#include <signal.h>
#include <sys/signalfd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "jitd/core/error.hpp"
#include "jitd/sys/unique_fd.hpp"

typedef struct sd_event sd_event;
typedef struct sd_event_source sd_event_source;

namespace jitd::daemon {

namespace detail {
struct SourceCallback;  // a source's handler; sd-event gets its address as userdata
}

// A one-shot timer on CLOCK_BOOTTIME (suspend counts; setting the wall clock does not).
// The daemon's scheduling logic depends on this interface only, so unit tests drive it
// with a fake.
class Timer {
 public:
  virtual ~Timer() = default;
  // Fires once, `delay` from now; arming a pending timer moves it.
  virtual void arm(std::chrono::microseconds delay) = 0;
  virtual void disarm() = 0;
  [[nodiscard]] virtual bool armed() const = 0;
};

// A watch of a descriptor someone else owns, for a caller that changes what it waits for
// (libcurl's sockets); removed from the loop when destroyed.
class IoWatch {
 public:
  virtual ~IoWatch() = default;
  virtual void set_events(std::uint32_t events) = 0;
  // Off epoll now, while the descriptor is still open: a descriptor closed first could be
  // reused by the time the watch is freed. The object may be freed later, outside its handler.
  virtual void stop() = 0;
};

class EventLoop {
 public:
  using SignalHandler = std::function<void(const signalfd_siginfo&)>;
  using IoHandler = std::function<void(std::uint32_t events)>;
  using TimerHandler = std::function<void()>;

  [[nodiscard]] static core::Result<std::unique_ptr<EventLoop>> create();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // The signal must be blocked in every thread (sd-event reads it from a signalfd).
  [[nodiscard]] core::Result<void> on_signal(int signal, std::string description,
                                             SignalHandler handler);
  // Watches `fd` for the epoll `events`. The source owns the descriptor, so it is closed
  // only after epoll has let go of it.
  [[nodiscard]] core::Result<void> on_io(sys::UniqueFd fd, std::uint32_t events,
                                         std::string description, IoHandler handler);
  // Watches a descriptor that someone else owns and that outlives the loop.
  [[nodiscard]] core::Result<void> on_io(int fd, std::uint32_t events, std::string description,
                                         IoHandler handler);
  // Watches a descriptor that someone else owns, as long as the returned IoWatch lives.
  [[nodiscard]] core::Result<std::unique_ptr<IoWatch>> watch_io(int fd, std::uint32_t events,
                                                                std::string description,
                                                                IoHandler handler);
  // Runs after every dispatch of another source (sd-event's post source).
  [[nodiscard]] core::Result<void> after_each_event(std::string description, TimerHandler handler);
  // A disarmed timer; the loop keeps running it as long as the Timer lives.
  [[nodiscard]] core::Result<std::unique_ptr<Timer>> make_timer(std::string description,
                                                                TimerHandler handler);
  // Pings systemd's watchdog from the loop when the unit sets WatchdogSec= (a wedged loop
  // then gets the service restarted); a no-op otherwise. Returns whether it is on.
  [[nodiscard]] core::Result<bool> enable_watchdog();

  // Runs until exit() is called; returns the exit code, or a negative errno.
  int run();
  void exit(int code);

 private:
  explicit EventLoop(sd_event* loop);
  [[nodiscard]] core::Result<void> add_io(int fd, bool own_fd, std::uint32_t events,
                                          const std::string& description, IoHandler handler);
  [[nodiscard]] core::Result<void> adopt(sd_event_source* source, const std::string& description,
                                         std::unique_ptr<detail::SourceCallback> callback);

  sd_event* loop_;
  std::vector<std::unique_ptr<detail::SourceCallback>> callbacks_;  // of the loop-owned sources
};

}  // namespace jitd::daemon
