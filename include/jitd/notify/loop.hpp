#pragma once
// The event loop as the notifier needs it: sockets whose watched events change (libcurl's
// CURLMOPT_SOCKETFUNCTION) and one-shot timers. The daemon adapts its sd-event loop to this,
// so notify knows nothing of the daemon and the daemon knows notify only as an audit sink.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "jitd/core/error.hpp"

namespace jitd::notify {

class Loop {
 public:
  // A descriptor someone else owns, watched for epoll events until stop() or destruction.
  class Watch {
   public:
    virtual ~Watch() = default;
    virtual void set_events(std::uint32_t events) = 0;
    // Off the loop at once, while the descriptor is still open (libcurl closes it right after
    // saying so); the object itself may be freed later, outside its own handler.
    virtual void stop() = 0;
  };
  class Alarm {
   public:
    virtual ~Alarm() = default;
    virtual void arm(std::chrono::microseconds delay) = 0;  // once, `delay` from now
    virtual void disarm() = 0;
  };

  virtual ~Loop() = default;
  [[nodiscard]] virtual core::Result<std::unique_ptr<Watch>> watch(
      int fd, std::uint32_t events, std::string description,
      std::function<void(std::uint32_t events)> handler) = 0;
  [[nodiscard]] virtual core::Result<std::unique_ptr<Alarm>> alarm(
      std::string description, std::function<void()> handler) = 0;
};

}  // namespace jitd::notify
