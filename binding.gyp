{
  "targets": [
    {
      "target_name": "kiln",
      "sources": [
        "<!@(node scripts/sources.js native/core/sources.txt native/napi/sources.txt)"
      ],
      "include_dirs": [
        "native/core",
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!(node scripts/ort-headers.js)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-ldl", "-pthread"]
    }
  ]
}
