// EbpfBackend's ChangeWatch: rtnetlink (links, tc filters and qdiscs), inotify on the pin
// directory and nftables events about the conntrack table, behind one epoll descriptor for the
// daemon's loop.
#include <linux/rtnetlink.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <filesystem>
#include <set>

#include <spdlog/spdlog.h>

#include "impl.hpp"
#include "jitd/nft/conntrack_table.hpp"
#include "jitd/sys/system_error.hpp"

namespace jitd::ebpf {
namespace {

// Link events carry every attribute of the interface; the kernel sends each in one datagram
// of at most NLMSG_GOODSIZE.
constexpr std::size_t datagram_size = 64 * 1024;

class EbpfWatch final : public core::ChangeWatch {
 public:
  EbpfWatch(std::weak_ptr<EbpfBackend::Impl> backend, sys::UniqueFd epoll, MnlSocket rtnetlink,
            std::shared_ptr<PinWatch> pins, std::unique_ptr<nft::RulesetMonitor> conntrack)
      : backend_(std::move(backend)),
        epoll_(std::move(epoll)),
        rtnetlink_(std::move(rtnetlink)),
        pins_(std::move(pins)),
        conntrack_(std::move(conntrack)),
        buffer_(datagram_size) {}

  [[nodiscard]] int fd() const override { return epoll_.get(); }

  // Events say where to look; what counts is the state found there afterwards. So jitd's own
  // changes (install, uninstall) are never foreign, and a filter removed and put back before
  // the drain is no change at all.
  [[nodiscard]] core::Result<core::ForeignChanges> drain() override {
    const auto impl = backend_.lock();
    if (!impl) {
      return core::fail(core::ErrorCode::kernel, "eBPF change watch: the backend is closed");
    }
    core::ForeignChanges changes;
    std::set<int> to_check;
    bool check_pins = false;
    if (auto read = read_links(*impl, changes, to_check); !read)
      return tl::unexpected(read.error());
    if (auto read = read_pins(changes, check_pins); !read) return tl::unexpected(read.error());
    auto table_events = conntrack_->drain();
    if (!table_events) return tl::unexpected(table_events.error());
    if (!table_events->lost.empty()) lost(changes, "conntrack table " + table_events->lost);
    const bool check_table = !table_events->foreign.empty() || !table_events->lost.empty();
    const auto note = [&changes](std::string change) {
      if (changes.foreign.empty()) changes.foreign = std::move(change);
    };
    if (impl->enforcing) {
      for (const int ifindex : to_check) {
        const auto found = impl->attached.find(ifindex);
        if (found == impl->attached.end()) continue;
        auto change = impl->attachment_change(found->second.link);
        if (!change) {
          // The interface went away; its RTM_DELLINK is on the way.
          if (change.error().sys_errno == ENODEV) continue;
          return tl::unexpected(change.error());
        }
        if (!change->empty()) note(*change);
      }
      if (check_pins) {
        const auto broken = impl->broken_pins();
        if (!std::filesystem::exists(impl->pin_directory)) {
          note("pin directory " + impl->pin_directory.string() + " removed");
        } else if (!broken.empty()) {
          const bool there = std::filesystem::exists(impl->pin_directory / broken.front());
          note("pin " + broken.front() + (there ? " replaced" : " removed"));
        }
      }
      // `nft flush ruleset` (a restart of nftables.service) deletes it with everything else;
      // without it conntrack stops tracking new flows, and sessions opened from then on would
      // not outlive their grant.
      if (check_table) {
        auto present = nft::conntrack_table_present();
        if (!present) return tl::unexpected(present.error());
        if (!*present) {
          note("table inet " + std::string(nft::conntrack_table) +
               " deleted (conntrack would stop tracking new flows)");
        }
      }
    }
    if (pins_->descriptor < 0) pins_->arm(impl->pin_directory);
    return changes;
  }

 private:
  core::Result<void> read_links(EbpfBackend::Impl& impl, core::ForeignChanges& changes,
                                std::set<int>& to_check) {
    const int fd = mnl_socket_get_fd(rtnetlink_.get());
    for (;;) {
      // MSG_TRUNC returns a datagram's full length, so a truncated one is noticed.
      const ssize_t received = recv(fd, buffer_.data(), buffer_.size(), MSG_DONTWAIT | MSG_TRUNC);
      if (received < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return {};
        // The queue overflowed and the kernel dropped events; the socket stays usable.
        if (errno == ENOBUFS) {
          lost(changes, "interface and tc events lost (ENOBUFS)");
          continue;
        }
        return sys::fail_system(core::ErrorCode::kernel, "read rtnetlink events", errno);
      }
      if (static_cast<std::size_t>(received) > buffer_.size()) {
        lost(changes, "interface and tc events lost (datagram truncated)");
        continue;
      }
      auto length = static_cast<int>(received);
      for (auto* header = reinterpret_cast<const nlmsghdr*>(buffer_.data());
           mnl_nlmsg_ok(header, length); header = mnl_nlmsg_next(header, &length)) {
        on_event(impl, header, changes, to_check);
      }
    }
  }

  static void on_event(EbpfBackend::Impl& impl, const nlmsghdr* header,
                       core::ForeignChanges& changes, std::set<int>& to_check) {
    switch (header->nlmsg_type) {
      case RTM_NEWLINK: {
        const auto link = parse_link(header);
        if (!link) return;
        const auto found = impl.attached.find(link->ifindex);
        if (found != impl.attached.end()) {
          found->second.link.name = link->name;  // renamed, perhaps
          // An XDP program's removal or replacement is a link change.
          if (impl.options.attach == AttachPoint::xdp) to_check.insert(link->ifindex);
          return;
        }
        if (!impl.enforcing || !impl.covers(*link)) return;
        if (auto attached = impl.attach(*link); !attached) {
          // Reported as lost events: the daemon then reads the state back, finds this
          // interface without the program and installs again, which reports the error.
          spdlog::error("ebpf: new interface {}: {}", link->name, attached.error().message);
          lost(changes, "attach to new interface " + link->name + " failed");
          return;
        }
        spdlog::info("ebpf: new interface {}: program attached", link->name);
        return;
      }
      case RTM_DELLINK: {
        if (const auto link = parse_link(header)) impl.attached.erase(link->ifindex);
        return;
      }
      case RTM_NEWTFILTER:
      case RTM_DELTFILTER:
      case RTM_DELQDISC: {
        if (header->nlmsg_len < NLMSG_SPACE(sizeof(tcmsg))) return;
        const auto* message = static_cast<const tcmsg*>(mnl_nlmsg_get_payload(header));
        if (impl.options.attach == AttachPoint::tc) to_check.insert(message->tcm_ifindex);
        return;
      }
      default: return;
    }
  }

  core::Result<void> read_pins(core::ForeignChanges& changes, bool& check_pins) {
    // Room for at least one event with the longest name.
    alignas(inotify_event) std::array<char, 16 * (sizeof(inotify_event) + NAME_MAX + 1)> events{};
    for (;;) {
      const ssize_t received = ::read(pins_->inotify.get(), events.data(), events.size());
      if (received < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return {};
        return sys::fail_system(core::ErrorCode::kernel, "read pin directory events", errno);
      }
      for (ssize_t offset = 0; offset < received;) {
        const auto* event = reinterpret_cast<const inotify_event*>(events.data() + offset);
        offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
        if (event->mask & IN_Q_OVERFLOW) lost(changes, "pin directory events lost (overflow)");
        // The directory itself went: its watch is gone, and is set again once it is back.
        if (event->mask & IN_IGNORED) pins_->descriptor = -1;
        if (event->mask & (IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF)) {
          check_pins = true;
        }
      }
    }
  }

  static void lost(core::ForeignChanges& changes, std::string why) {
    if (changes.lost.empty()) changes.lost = std::move(why);
  }

  std::weak_ptr<EbpfBackend::Impl> backend_;
  sys::UniqueFd epoll_;
  MnlSocket rtnetlink_;
  std::shared_ptr<PinWatch> pins_;
  std::unique_ptr<nft::RulesetMonitor> conntrack_;
  std::vector<char> buffer_;
};

core::Result<void> watch_fd(int epoll, int fd, const char* what) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = fd;
  if (epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) == 0) return {};
  return sys::fail_system(core::ErrorCode::kernel, std::string("watch ") + what, errno);
}

}  // namespace

core::Result<std::unique_ptr<core::ChangeWatch>> open_watch(
    const std::shared_ptr<EbpfBackend::Impl>& impl) {
  sys::UniqueFd epoll(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) return sys::fail_system(core::ErrorCode::kernel, "create epoll descriptor", errno);
  auto rtnetlink = open_rtnetlink(RTMGRP_LINK | RTMGRP_TC, true);
  if (!rtnetlink) return tl::unexpected(rtnetlink.error());
  auto pins = std::make_shared<PinWatch>(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!pins->inotify) {
    return sys::fail_system(core::ErrorCode::kernel, "watch pin directory (inotify)", errno);
  }
  // A directory removed since is watched again once install() makes it.
  pins->arm(impl->pin_directory);
  if (pins->descriptor < 0 && errno != ENOENT) {
    return sys::fail_system(core::ErrorCode::kernel,
                            "watch pin directory " + impl->pin_directory.string(), errno);
  }
  if (auto added = watch_fd(epoll.get(), mnl_socket_get_fd(rtnetlink->get()), "rtnetlink events");
      !added) {
    return tl::unexpected(added.error());
  }
  if (auto added = watch_fd(epoll.get(), pins->inotify.get(), "pin directory events"); !added) {
    return tl::unexpected(added.error());
  }
  auto conntrack = nft::watch_conntrack_table();
  if (!conntrack) return tl::unexpected(conntrack.error());
  if (auto added = watch_fd(epoll.get(), (*conntrack)->fd(), "conntrack table events"); !added) {
    return tl::unexpected(added.error());
  }
  impl->pin_watches.push_back(pins);
  return std::unique_ptr<core::ChangeWatch>(new EbpfWatch(
      impl, std::move(epoll), std::move(*rtnetlink), std::move(pins), std::move(*conntrack)));
}

}  // namespace jitd::ebpf
