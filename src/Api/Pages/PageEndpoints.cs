using Microsoft.Extensions.FileProviders;

namespace Telemetry.Api.Pages;

/// <summary>
/// The clinician's dashboard at <c>/</c> (and a patient's page at <c>/patients/{id}</c>) and the patient's progress at
/// <c>/me</c>: static pages beside the server's assembly that use the same REST and SSE endpoints as any client, so
/// they hold no data and need no sign-in to load. Everything they show is fetched with the person's own token.
/// </summary>
public static partial class PageEndpoints
{
    /// <summary>Scripts, styles and data only from this server; the pages are never framed.</summary>
    private const string ContentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

    public static WebApplication MapPages(this WebApplication app)
    {
        var root = Path.Combine(AppContext.BaseDirectory, "wwwroot");
        if (!Directory.Exists(root))
        {
            LogPagesMissing(app.Logger, root);
            return app;
        }

        var files = new PhysicalFileProvider(root);
        app.UseStaticFiles(new StaticFileOptions
        {
            FileProvider = files,
            OnPrepareResponse = context =>
            {
                // Revalidated on each load (cheap: an ETag), so a browser never runs last version's script with this version's page.
                context.Context.Response.Headers.CacheControl = "no-cache";
                Secure(context.Context.Response);
            },
        });
        MapPage(app, "/", files, "index.html");
        MapPage(app, "/patients/{patientId}", files, "index.html");
        MapPage(app, "/me", files, "me.html");
        return app;
    }

    private static void MapPage(WebApplication app, string route, IFileProvider files, string page) =>
        app.MapGet(route, (HttpContext context) =>
        {
            Secure(context.Response);
            context.Response.Headers.CacheControl = "no-cache";
            return TypedResults.Stream(files.GetFileInfo(page).CreateReadStream(), "text/html; charset=utf-8");
        }).ExcludeFromDescription();

    private static void Secure(HttpResponse response)
    {
        response.Headers.ContentSecurityPolicy = ContentSecurityPolicy;
        response.Headers.XContentTypeOptions = "nosniff";
        response.Headers["Referrer-Policy"] = "no-referrer";
    }

    [LoggerMessage(EventId = 4201, Level = LogLevel.Warning, Message = "No pages at {Root}: / and /me are not served (the build puts them there)")]
    private static partial void LogPagesMissing(ILogger logger, string root);
}
