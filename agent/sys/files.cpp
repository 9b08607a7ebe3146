#include "jitd/sys/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <utility>

#include "jitd/sys/system_error.hpp"

namespace jitd::sys {

core::Result<std::string> read_all(int fd, const std::string& what, std::size_t max_bytes) {
  std::string text;
  std::array<char, 1 << 16> buffer{};
  for (;;) {
    const auto got = ::read(fd, buffer.data(), buffer.size());
    if (got == 0) return text;
    if (got > 0) {
      text.append(buffer.data(), static_cast<std::size_t>(got));
      if (text.size() > max_bytes) {
        return core::fail(core::ErrorCode::io,
                          what + ": larger than " + std::to_string(max_bytes) + " bytes");
      }
    } else if (errno != EINTR) {
      return fail_system(core::ErrorCode::io, what, errno);
    }
  }
}

core::Result<std::string> read_at(int fd, std::uint64_t offset, std::size_t length,
                                  const std::string& what) {
  std::string text(length, '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const auto read =
        ::pread(fd, text.data() + got, text.size() - got, static_cast<off_t>(offset + got));
    if (read < 0 && errno == EINTR) continue;
    if (read < 0) return fail_system(core::ErrorCode::io, what, errno);
    if (read == 0) break;
    got += static_cast<std::size_t>(read);
  }
  text.resize(got);
  return text;
}

core::Result<void> write_all(int fd, std::string_view text, const std::string& what) {
  while (!text.empty()) {
    const auto written = ::write(fd, text.data(), text.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return fail_system(core::ErrorCode::io, what, errno);
    }
    text.remove_prefix(static_cast<std::size_t>(written));
  }
  return {};
}

core::Result<void> append_record(int fd, std::string_view record, const std::string& what) {
  const auto written = ::write(fd, record.data(), record.size());
  // Before cut_tail, whose calls overwrite errno.
  const int error = errno;
  if (written < 0 || static_cast<std::size_t>(written) != record.size()) {
    if (written < 0) return fail_system(core::ErrorCode::io, what, error);
    cut_tail(fd, static_cast<std::size_t>(written));
    return core::fail(core::ErrorCode::io,
                      what + ": short write (" + std::to_string(written) + " of " +
                          std::to_string(record.size()) + " bytes)",
                      EIO);
  }
  return {};
}

core::Result<void> sync_data(int fd, const std::string& what) {
  if (::fdatasync(fd) != 0) return fail_system(core::ErrorCode::io, what, errno);
  return {};
}

Replacement::Replacement(std::filesystem::path path, std::string temp, UniqueFd fd)
    : path_(std::move(path)), temp_(std::move(temp)), fd_(std::move(fd)) {}

Replacement::~Replacement() {
  if (fd_) ::unlink(temp_.c_str());
}

core::Result<Replacement> Replacement::create(const std::filesystem::path& path) {
  auto temp = path.string() + ".tmp";
  UniqueFd fd(::open(temp.c_str(), O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return fail_system(core::ErrorCode::io, "create " + temp, errno);
  return Replacement(path, std::move(temp), std::move(fd));
}

core::Result<UniqueFd> Replacement::commit() && {
  if (::fdatasync(fd_.get()) != 0) return fail_system(core::ErrorCode::io, "sync " + temp_, errno);
  if (::rename(temp_.c_str(), path_.c_str()) != 0) {
    return fail_system(core::ErrorCode::io, "rename " + temp_ + " to " + path_.string(), errno);
  }
  return std::move(fd_);
}

core::Result<UniqueFd> replace_synced(const std::filesystem::path& path, std::string_view text) {
  auto replacement = Replacement::create(path);
  if (!replacement) return tl::unexpected(replacement.error());
  if (auto written = write_all(replacement->fd(), text, "write " + replacement->temp_path());
      !written) {
    return tl::unexpected(written.error());
  }
  return std::move(*replacement).commit();
}

core::Result<void> sync_directory_of(const std::filesystem::path& file) {
  const auto directory = file.has_parent_path() ? file.parent_path() : ".";
  UniqueFd fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0) {
    return fail_system(core::ErrorCode::io, "sync directory " + directory.string(), errno);
  }
  return {};
}

void cut_tail(int fd, std::size_t bytes) {
  struct stat status {};
  if (bytes == 0 || ::fstat(fd, &status) != 0) return;
  if (static_cast<std::size_t>(status.st_size) < bytes) return;
  if (::ftruncate(fd, status.st_size - static_cast<off_t>(bytes)) == 0) (void)::fdatasync(fd);
}

}  // namespace jitd::sys
