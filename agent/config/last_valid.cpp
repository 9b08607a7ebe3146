#include "jitd/config/last_valid.hpp"

#include <fcntl.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "jitd/sys/files.hpp"
#include "jitd/sys/system_error.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::config {

namespace {

using nlohmann::json;

// A newer jitd may change the layout; an older one must not misread it.
constexpr int format_version = 1;
// Policy files are at most 1 MiB each; a copy this large is not one jitd wrote.
constexpr std::size_t max_copy_bytes = 64u << 20;

}  // namespace

core::Result<void> save_last_valid_policy(const std::filesystem::path& path,
                                          const LastValidPolicy& policy) {
  json files = json::array();
  for (const auto& source : policy.sources) {
    files.push_back({{"name", source.name}, {"text", source.text}});
  }
  const json copy{{"format", format_version},
                  {"directory", policy.directory.string()},
                  {"savedUtc", policy.saved_utc},
                  {"files", std::move(files)}};
  std::string text;
  try {
    text = copy.dump(1) + "\n";
  } catch (const json::type_error&) {
    // Replacing the bytes would change what parses; no copy beats a wrong one.
    return core::fail(core::ErrorCode::invalid_argument,
                      "last valid policy not saved: a policy file is not valid UTF-8");
  }
  auto replaced = sys::replace_synced(path, text);
  if (!replaced) return tl::unexpected(replaced.error());
  return sys::sync_directory_of(path);
}

core::Result<std::optional<LastValidPolicy>> load_last_valid_policy(
    const std::filesystem::path& path) {
  const auto what = "last valid policy " + path.string();
  sys::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    return sys::fail_system(core::ErrorCode::io, "read " + what, errno);
  }
  const auto text = sys::read_all(fd.get(), "read " + what, max_copy_bytes);
  if (!text) return tl::unexpected(text.error());
  const auto damaged = [&](const std::string& why) {
    return core::fail(core::ErrorCode::io, what + " is damaged: " + why);
  };
  const auto copy = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (copy.is_discarded() || !copy.is_object()) return damaged("not a JSON object");
  const auto format = copy.find("format");
  if (format == copy.end() || !format->is_number_integer()) return damaged("no format version");
  if (format->get<int>() != format_version) {
    return core::fail(core::ErrorCode::io, what + " has format " + format->dump() +
                                               ", this jitd reads format " +
                                               std::to_string(format_version));
  }
  LastValidPolicy policy;
  const auto directory = copy.find("directory");
  const auto saved = copy.find("savedUtc");
  const auto files = copy.find("files");
  if (directory == copy.end() || !directory->is_string() || saved == copy.end() ||
      !saved->is_string() || files == copy.end() || !files->is_array()) {
    return damaged("directory, savedUtc or files missing");
  }
  policy.directory = directory->get<std::string>();
  policy.saved_utc = saved->get<std::string>();
  for (const auto& file : *files) {
    if (!file.is_object() || !file.contains("name") || !file["name"].is_string() ||
        !file.contains("text") || !file["text"].is_string()) {
      return damaged("a file without name or text");
    }
    policy.sources.push_back({file["name"].get<std::string>(), file["text"].get<std::string>()});
  }
  return policy;
}

}  // namespace jitd::config
