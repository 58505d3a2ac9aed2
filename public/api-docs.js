// Starts Swagger UI on /api/docs (served from this server; no CDN).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: false,
    withCredentials: true,
    validatorUrl: null,
  });
});
