#include "jitd/daemon/event_loop.hpp"

#include <systemd/sd-event.h>

#include <exception>
#include <variant>

#include <spdlog/spdlog.h>

#include "jitd/sys/handle.hpp"
#include "jitd/sys/system_error.hpp"

namespace jitd::daemon {

namespace {

// sd-event's default timer accuracy is 250 ms; a tamper repair must not wait that long.
constexpr std::uint64_t timer_accuracy_us = 1000;

using SourceRef = sys::Handle<sd_event_source, sd_event_source_unref>;
using Callback = detail::SourceCallback;

core::Error event_error(const std::string& what, int negative_errno) {
  return sys::system_error(core::ErrorCode::io, "event loop: " + what, -negative_errno);
}

}  // namespace

struct detail::SourceCallback {
  std::variant<EventLoop::SignalHandler, EventLoop::IoHandler, EventLoop::TimerHandler> handler;

  // An exception must not unwind through sd-event's C frames; one handler's failure is
  // logged and the loop goes on serving everything else.
  template <class Handler, class... Args>
  static int invoke(void* self, const Args&... args) {
    auto* callback = static_cast<SourceCallback*>(self);
    try {
      std::get<Handler>(callback->handler)(args...);
    } catch (const std::exception& error) {
      spdlog::error("event handler failed: {}", error.what());
    } catch (...) {
      spdlog::error("event handler failed: unknown exception");
    }
    return 0;
  }
  static int on_signal(sd_event_source*, const signalfd_siginfo* info, void* self) {
    return invoke<EventLoop::SignalHandler>(self, *info);
  }
  static int on_io(sd_event_source*, int, std::uint32_t events, void* self) {
    return invoke<EventLoop::IoHandler>(self, events);
  }
  static int on_time(sd_event_source*, std::uint64_t, void* self) {
    return invoke<EventLoop::TimerHandler>(self);
  }
  static int on_post(sd_event_source*, void* self) { return invoke<EventLoop::TimerHandler>(self); }
};

namespace {

class LoopTimer final : public Timer {
 public:
  LoopTimer(SourceRef source, std::unique_ptr<Callback> callback)
      : source_(std::move(source)), callback_(std::move(callback)) {}

  void arm(std::chrono::microseconds delay) override {
    std::uint64_t now = 0;
    sd_event_now(sd_event_source_get_event(source_.get()), CLOCK_BOOTTIME, &now);
    // Both calls only fail for a source that is not a timer or a loop that has ended.
    sd_event_source_set_time(source_.get(), now + static_cast<std::uint64_t>(delay.count()));
    sd_event_source_set_enabled(source_.get(), SD_EVENT_ONESHOT);
  }
  void disarm() override { sd_event_source_set_enabled(source_.get(), SD_EVENT_OFF); }
  [[nodiscard]] bool armed() const override {
    int enabled = SD_EVENT_OFF;
    sd_event_source_get_enabled(source_.get(), &enabled);
    return enabled != SD_EVENT_OFF;
  }

 private:
  SourceRef source_;  // released before the callback it points at
  std::unique_ptr<Callback> callback_;
};

class LoopIoWatch final : public IoWatch {
 public:
  LoopIoWatch(SourceRef source, std::unique_ptr<Callback> callback)
      : source_(std::move(source)), callback_(std::move(callback)) {}

  void set_events(std::uint32_t events) override {
    // Fails only for a source that is not an io source or a loop that has ended.
    sd_event_source_set_io_events(source_.get(), events);
  }
  void stop() override { sd_event_source_set_enabled(source_.get(), SD_EVENT_OFF); }

 private:
  SourceRef source_;  // released before the callback it points at
  std::unique_ptr<Callback> callback_;
};

}  // namespace

EventLoop::EventLoop(sd_event* loop) : loop_(loop) {}

EventLoop::~EventLoop() {
  // Frees the floating sources (closing the descriptors they own) before their callbacks.
  sd_event_unref(loop_);
}

core::Result<std::unique_ptr<EventLoop>> EventLoop::create() {
  sd_event* loop = nullptr;
  if (const int error = sd_event_new(&loop); error < 0)
    return tl::unexpected(event_error("create", error));
  return std::unique_ptr<EventLoop>(new EventLoop(loop));
}

core::Result<void> EventLoop::adopt(sd_event_source* source, const std::string& description,
                                    std::unique_ptr<Callback> callback) {
  SourceRef owned(source);
  sd_event_source_set_description(source, description.c_str());
  // The loop owns it from here: it lives as long as the loop.
  if (const int error = sd_event_source_set_floating(source, 1); error < 0) {
    return tl::unexpected(event_error("keep " + description, error));
  }
  callbacks_.push_back(std::move(callback));
  return {};
}

core::Result<void> EventLoop::on_signal(int signal, std::string description,
                                        SignalHandler handler) {
  auto callback = std::make_unique<Callback>(Callback{std::move(handler)});
  sd_event_source* source = nullptr;
  if (const int error =
          sd_event_add_signal(loop_, &source, signal, &Callback::on_signal, callback.get());
      error < 0) {
    return tl::unexpected(event_error("watch " + description, error));
  }
  return adopt(source, description, std::move(callback));
}

core::Result<void> EventLoop::on_io(int fd, std::uint32_t events, std::string description,
                                    IoHandler handler) {
  return add_io(fd, false, events, description, std::move(handler));
}

core::Result<void> EventLoop::on_io(sys::UniqueFd fd, std::uint32_t events, std::string description,
                                    IoHandler handler) {
  auto added = add_io(fd.get(), true, events, description, std::move(handler));
  if (added) (void)fd.release();  // the source closes it when it is freed
  return added;
}

core::Result<void> EventLoop::add_io(int fd, bool own_fd, std::uint32_t events,
                                     const std::string& description, IoHandler handler) {
  auto callback = std::make_unique<Callback>(Callback{std::move(handler)});
  sd_event_source* source = nullptr;
  if (const int error =
          sd_event_add_io(loop_, &source, fd, events, &Callback::on_io, callback.get());
      error < 0) {
    if (own_fd) {
      const sys::UniqueFd unwatched(fd);  // nothing watches it: closed here
    }
    return tl::unexpected(event_error("watch " + description, error));
  }
  if (const int error = sd_event_source_set_io_fd_own(source, own_fd ? 1 : 0); error < 0) {
    sd_event_source_unref(source);
    if (own_fd) {
      const sys::UniqueFd unwatched(fd);
    }
    return tl::unexpected(event_error("own descriptor of " + description, error));
  }
  return adopt(source, description, std::move(callback));
}

core::Result<std::unique_ptr<IoWatch>> EventLoop::watch_io(int fd, std::uint32_t events,
                                                           std::string description,
                                                           IoHandler handler) {
  auto callback = std::make_unique<Callback>(Callback{std::move(handler)});
  sd_event_source* source = nullptr;
  if (const int error =
          sd_event_add_io(loop_, &source, fd, events, &Callback::on_io, callback.get());
      error < 0) {
    return tl::unexpected(event_error("watch " + description, error));
  }
  SourceRef owned(source);
  sd_event_source_set_description(source, description.c_str());
  return std::make_unique<LoopIoWatch>(std::move(owned), std::move(callback));
}

core::Result<void> EventLoop::after_each_event(std::string description, TimerHandler handler) {
  auto callback = std::make_unique<Callback>(Callback{std::move(handler)});
  sd_event_source* source = nullptr;
  if (const int error = sd_event_add_post(loop_, &source, &Callback::on_post, callback.get());
      error < 0) {
    return tl::unexpected(event_error("add " + description, error));
  }
  // A post source is one-shot by default: it must run after every event, not only the next.
  if (const int error = sd_event_source_set_enabled(source, SD_EVENT_ON); error < 0) {
    sd_event_source_unref(source);
    return tl::unexpected(event_error("enable " + description, error));
  }
  return adopt(source, description, std::move(callback));
}

core::Result<std::unique_ptr<Timer>> EventLoop::make_timer(std::string description,
                                                           TimerHandler handler) {
  auto callback = std::make_unique<Callback>(Callback{std::move(handler)});
  sd_event_source* source = nullptr;
  if (const int error = sd_event_add_time(loop_, &source, CLOCK_BOOTTIME, 0, timer_accuracy_us,
                                          &Callback::on_time, callback.get());
      error < 0) {
    return tl::unexpected(event_error("add " + description, error));
  }
  SourceRef owned(source);
  sd_event_source_set_description(source, description.c_str());
  if (const int error = sd_event_source_set_enabled(source, SD_EVENT_OFF); error < 0) {
    return tl::unexpected(event_error("disarm " + description, error));
  }
  return std::make_unique<LoopTimer>(std::move(owned), std::move(callback));
}

core::Result<bool> EventLoop::enable_watchdog() {
  const int enabled = sd_event_set_watchdog(loop_, 1);
  if (enabled < 0) return tl::unexpected(event_error("enable watchdog", enabled));
  return enabled > 0;
}

int EventLoop::run() { return sd_event_loop(loop_); }

void EventLoop::exit(int code) { sd_event_exit(loop_, code); }

}  // namespace jitd::daemon
